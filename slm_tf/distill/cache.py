"""Teacher outputs computed once and cached as TFRecords next to the prepared data.

A cache entry is keyed by the teacher's weights, the data, the split and the transfer-set
options, so many students and hyper-parameters reuse one teacher pass.
"""
import hashlib
import os
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging

from slm_tf.io_utils import atomic_path, file_digest  # noqa: F401  (the teacher digest)
from slm_tf.tokenizers import Tokenizer

CACHE_DIR = "teacher_cache"


def teacher_outputs(model: keras.Model, tokenizer: Tokenizer, texts: Sequence[str],
                    max_seq_len: int, batch_size: int = 128):
    """The model's outputs for ``texts`` (tokenized in-graph), with a progress bar: logits,
    or ``[logits, features]`` for a model built with ``with_features``."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string))
    ds = ds.batch(batch_size).map(lambda t: tokenizer.tf_encode(t, max_seq_len))
    verbose = 1 if sys.stdout.isatty() else 2  # a live bar on a terminal, one line in logs
    return model.predict(ds.prefetch(tf.data.AUTOTUNE), verbose=verbose)


def cache_key(*parts) -> str:
    """A short hash of everything that determines a cache entry."""
    h = hashlib.sha1()
    for part in parts:
        h.update(repr(part).encode("utf-8"))
    return h.hexdigest()[:16]


def _floats(row) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(row).tolist()))


def write_cache(path: str, texts: Sequence[str], labels: Sequence[int], logits: np.ndarray,
                features: Optional[np.ndarray] = None) -> None:
    """Writes (text, label, teacher_logits[, teacher_features]) records atomically."""
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(tmp) as writer:
            for i, (text, label) in enumerate(zip(texts, labels)):
                feature = {
                    "text": tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[text.encode("utf-8")])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                    "teacher_logits": _floats(logits[i]),
                }
                if features is not None:
                    feature["teacher_features"] = _floats(features[i])
                ex = tf.train.Example(features=tf.train.Features(feature=feature))
                writer.write(ex.SerializeToString())


def read_cache(path: str, num_classes: int, feature_dim: int = 0) -> tf.data.Dataset:
    """``(text, label, teacher_logits[, teacher_features])`` records of a cache file."""
    spec = {"text": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
            "teacher_logits": tf.io.FixedLenFeature([num_classes], tf.float32)}
    if feature_dim:
        spec["teacher_features"] = tf.io.FixedLenFeature([feature_dim], tf.float32)

    def parse(record):
        e = tf.io.parse_single_example(record, spec)
        out = (e["text"], tf.cast(e["label"], tf.int32), e["teacher_logits"])
        return out + (e["teacher_features"],) if feature_dim else out
    return tf.data.TFRecordDataset(path).map(parse)


def cached_teacher_outputs(path: str, model, tokenizer: Tokenizer, texts: List[str],
                           labels: List[int], max_seq_len: int,
                           with_features: bool = False) -> Tuple[str, bool]:
    """Returns the cache file for this transfer set, computing it only if it is missing.
    ``model`` returns ``[logits, features]`` when ``with_features``."""
    if os.path.exists(path):
        logging.info("teacher outputs: reusing the cache %s", path)
        return path, True
    logging.info("teacher outputs: computing %d examples once, caching in %s", len(texts), path)
    out = teacher_outputs(model, tokenizer, texts, max_seq_len)
    logits, features = (out[0], out[1]) if with_features else (out, None)
    write_cache(path, texts, labels, logits, features)
    return path, False
