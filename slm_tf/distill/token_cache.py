"""Teacher outputs per position, computed once and cached as TFRecords (token-level KD).

One record per block of token ids: the ids (``context`` inputs), the labels, the mask of the
positions that count, and the teacher's logits at every position - the full distribution as
float16 (``2 * V`` bytes per position) or, for large vocabularies, its ``k`` most likely
classes: their ids and ``k + 1`` float16 log-probabilities, the k classes' and the log of
the mass outside them (``6 * k + 2`` bytes per position; see ``losses.sparse_kd_loss``).
Raw little-endian bytes keep a record a few parsing ops away from a tensor.
"""
import os
import sys
from typing import Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging

from slm_tf.distill.config import FULL_CACHE_MAX_VOCAB, TOP_K_FALLBACK
from slm_tf.distill.distiller import STUDENT_IDS, TEACHER_LOGITS, TEACHER_TOP_IDS
from slm_tf.distill.losses import top_k_buckets
from slm_tf.io_utils import atomic_path

Blocks = Tuple[np.ndarray, np.ndarray, np.ndarray]  # ids [N, L], labels [N, L], mask [N, L]


def top_k_for(vocab_size: int, requested: int) -> int:
    """The k a cache keeps: ``requested``, or 0 (everything) up to FULL_CACHE_MAX_VOCAB
    classes and TOP_K_FALLBACK above; never more than the vocabulary."""
    if requested:
        return min(requested, vocab_size)
    return 0 if vocab_size <= FULL_CACHE_MAX_VOCAB else TOP_K_FALLBACK


def cache_format(top_k: int):
    """The part of a cache key that names the record layout: 0 for a full distribution, a
    tagged value for a top-k cache with its rest bucket (so a file of the earlier top-k
    layout, k raw logits without the rest, is never read as this one)."""
    return f"top{top_k}+rest" if top_k else top_k


def columns(vocab_size: int, top_k: int) -> int:
    """Float16 values cached per position: V (full), or k plus the rest bucket when k < V."""
    if not top_k:
        return vocab_size
    return top_k + 1 if top_k < vocab_size else top_k


def bytes_per_position(vocab_size: int, top_k: int) -> int:
    """Cached teacher bytes per position (float16 values, top-k ids as int32)."""
    return 2 * columns(vocab_size, top_k) + 4 * top_k


def _bytes(array: np.ndarray) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[array.tobytes()]))


def _teacher_batches(teacher: keras.Model, ids: np.ndarray, top_k: int, batch_size: int
                     ) -> Iterator[Tuple[np.ndarray, Optional[np.ndarray]]]:
    forward = tf.function(lambda x: teacher(x, training=False))
    bar = keras.utils.Progbar(len(ids), unit_name="block",
                              stateful_metrics=(), verbose=1 if sys.stdout.isatty() else 2)
    for start in range(0, len(ids), batch_size):
        logits = tf.cast(forward(tf.constant(ids[start:start + batch_size])), tf.float32)
        if top_k:
            top = tf.math.top_k(logits, top_k).indices
            yield (top_k_buckets(logits, top).numpy().astype(np.float16),
                   top.numpy().astype(np.int32))
        else:
            yield logits.numpy().astype(np.float16), None
        bar.update(min(start + batch_size, len(ids)))


def write_token_cache(path: str, teacher: keras.Model, blocks: Blocks, top_k: int,
                      batch_size: int = 64) -> None:
    """Runs ``teacher`` over every block once and writes the records atomically, in the order
    given (shuffle the blocks first for a training cache)."""
    ids, labels, mask = blocks
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        row = 0
        for logits, top in _teacher_batches(teacher, ids, top_k, batch_size):
            for i in range(len(logits)):
                feature = {"ids": _bytes(ids[row].astype(np.int32)),
                           "labels": _bytes(labels[row].astype(np.int32)),
                           "mask": _bytes(mask[row].astype(np.float16)),
                           "logits": _bytes(logits[i])}
                if top is not None:
                    feature["top_ids"] = _bytes(top[i])
                writer.write(tf.train.Example(features=tf.train.Features(
                    feature=feature)).SerializeToString())
                row += 1


def read_token_cache(path: str, context: int, vocab_size: int, top_k: int) -> tf.data.Dataset:
    """``({student_ids, teacher_logits[, teacher_top_ids]}, labels, mask)`` per block."""
    names = ["ids", "labels", "mask", "logits"] + (["top_ids"] if top_k else [])
    spec = {n: tf.io.FixedLenFeature([], tf.string) for n in names}
    width = columns(vocab_size, top_k)

    def parse(record):
        e = tf.io.parse_single_example(record, spec)
        inputs = {STUDENT_IDS: tf.reshape(tf.io.decode_raw(e["ids"], tf.int32), [context]),
                  TEACHER_LOGITS: tf.reshape(tf.io.decode_raw(e["logits"], tf.float16),
                                             [context, width])}
        if top_k:
            inputs[TEACHER_TOP_IDS] = tf.reshape(tf.io.decode_raw(e["top_ids"], tf.int32),
                                                 [context, top_k])
        labels = tf.reshape(tf.io.decode_raw(e["labels"], tf.int32), [context])
        mask = tf.cast(tf.reshape(tf.io.decode_raw(e["mask"], tf.float16), [context]),
                       tf.float32)
        return inputs, labels, mask
    return tf.data.TFRecordDataset(path).map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def cached_token_outputs(path: str, teacher: keras.Model, blocks: Blocks, vocab_size: int,
                         top_k: int) -> tf.data.Dataset:
    """The cache at ``path`` (computed now if missing) as a dataset of blocks."""
    context = blocks[0].shape[1]
    if os.path.exists(path):
        logging.info("teacher outputs: reusing the cache %s", path)
    else:
        size = len(blocks[0]) * context * bytes_per_position(vocab_size, top_k)
        logging.info("teacher outputs: computing %d blocks of %d positions once (%s, about "
                     "%.0f MB), caching in %s", len(blocks[0]), context,
                     f"top {top_k}" if top_k else "full float16 distribution", size / 1e6, path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_token_cache(path, teacher, blocks, top_k)
    return read_token_cache(path, context, vocab_size, top_k)
