"""``--frozen_encoder``: a pretrained encoder kept frozen whose pooled outputs are computed once
per text and cached, with only the classifier head trained on them.

The model stays the whole classifier (ids -> logits, same layers as a fine-tuned one), so it is
saved, evaluated, exported, served and used as a distillation teacher like any run; only
training (and the distillation teacher cache, :func:`cached_outputs`) read the cache instead of
running the encoder again. Cache entries are keyed by the encoder's weights and each text's
token ids, so a different head, more epochs, a rerun or a teacher pass over the training texts
reuse them, and only texts never seen are encoded.
"""
import glob
import hashlib
import os
import sys
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging

from slm_tf.errors import UserError
from slm_tf.io_utils import atomic_path
from slm_tf.peft.config import check

CACHE_DIR = "encoder_cache"
POOLING_LAYER = "pooling"
# The classifier head every zoo model ends with (TextClassifier.classifier_head).
HEAD_LAYERS = ("head_dropout", "logits")
# Rows encoded between two saves of the cache: a crash loses at most this much work.
SAVE_EVERY = 4096


def enabled(run_config: dict) -> bool:
    """True when a run's ``config.json`` says it was trained with ``--frozen_encoder``."""
    return bool(run_config.get("finetune", {}).get("frozen_encoder", False))


def split(model: keras.Model) -> Tuple[keras.Model, keras.Model]:
    """``(encoder: ids -> pooled, head: pooled -> logits)`` sharing ``model``'s layers, so
    training the head trains ``model``."""
    try:
        pooled = model.get_layer(POOLING_LAYER).output
        layers = [model.get_layer(name) for name in HEAD_LAYERS]
    except ValueError:
        raise UserError(f"--frozen_encoder needs a model with a '{POOLING_LAYER}' layer and the "
                        f"classifier head {HEAD_LAYERS}; {model.name} has not. Fix: use "
                        "--model=bert.") from None
    encoder = keras.Model(model.inputs, pooled, name="frozen_encoder")
    x = inputs = keras.Input((int(pooled.shape[-1]),), name="pooled")
    for layer in layers:
        x = layer(x)
    return encoder, keras.Model(inputs, x, name="head")


def head_model(model: keras.Model) -> keras.Model:
    """The trainable head of ``model``; every encoder layer is marked not trainable."""
    encoder, head = split(model)
    for layer in encoder.layers:
        layer.trainable = False
    return head


def encoder_digest(encoder: keras.Model) -> str:
    """A short hash of the encoder's weights and input length (what its outputs depend on)."""
    # Shapes and values only: variable names change when a saved model is loaded again.
    h = hashlib.sha1(repr(encoder.inputs[0].shape.as_list()).encode())
    for w in encoder.weights:
        h.update(repr(tuple(w.shape)).encode())
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()[:16]


def row_keys(ids: np.ndarray) -> np.ndarray:
    """One SHA-1 per row of token ids (``S40``), the cache's key for that text."""
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    return np.array([hashlib.sha1(row.tobytes()).hexdigest().encode() for row in ids], "S40")


class EncoderCache:
    """Pooled encoder outputs by token-id row, in a folder per encoder holding one ``.npz``
    part per batch of newly encoded rows (each save writes only its new rows, so a large corpus
    costs linear, not quadratic, disk writes); ``encode`` runs on the rows not cached yet.
    ``computed`` / ``reused`` count rows."""

    def __init__(self, directory: str, encode: Callable[[np.ndarray], np.ndarray]):
        self.directory, self.encode = directory, encode
        self.computed = self.reused = 0
        parts = sorted(glob.glob(os.path.join(directory, "part-*.npz")))
        keys, features = [np.zeros((0,), "S40")], []
        for part in parts:
            with np.load(part, allow_pickle=False) as z:
                keys.append(z["keys"])
                features.append(z["features"])
        self._parts = len(parts)
        self._keys = np.concatenate(keys)
        self._features: Optional[np.ndarray] = np.concatenate(features) if features else None
        self._index = {k: i for i, k in enumerate(self._keys.tolist())}

    def __len__(self) -> int:
        return len(self._keys)

    def entries(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(keys, features)`` of every cached row, in the order they were added."""
        return self._keys, self._features

    def features(self, ids: np.ndarray) -> np.ndarray:
        """``[N, D]`` pooled outputs of ``ids`` rows, encoding (and caching) only new ones."""
        keys = row_keys(ids)
        todo, seen = [], set()
        for i, k in enumerate(keys.tolist()):
            if k not in self._index and k not in seen:
                seen.add(k)
                todo.append(i)
        if todo:
            logging.info("encoder outputs: computing %d of %d texts once, caching in %s",
                         len(todo), len(ids), self.directory)
        for start in range(0, len(todo), SAVE_EVERY):
            rows = todo[start:start + SAVE_EVERY]
            self._add(keys[rows], np.asarray(self.encode(ids[rows]), np.float32))
        self.computed += len(todo)
        self.reused += len(ids) - len(todo)
        return self._features[[self._index[k] for k in keys.tolist()]]

    def _add(self, keys: np.ndarray, features: np.ndarray) -> None:
        os.makedirs(self.directory, exist_ok=True)
        with atomic_path(os.path.join(self.directory, f"part-{self._parts:05d}.npz")) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
                np.savez(f, keys=keys, features=features)
        self._parts += 1
        for k in keys.tolist():
            self._index[k] = len(self._index)
        self._keys = np.concatenate([self._keys, keys])
        self._features = features if self._features is None else np.concatenate(
            [self._features, features])


def predict_fn(encoder: keras.Model, batch_size: int = 128) -> Callable[[np.ndarray], np.ndarray]:
    """Runs ``encoder`` on an id matrix with a progress bar (a live one on a terminal)."""
    verbose = 1 if sys.stdout.isatty() else 2
    return lambda ids: encoder.predict(ids, batch_size=batch_size, verbose=verbose)


def cache_for(encoder: keras.Model, data_dir: str) -> EncoderCache:
    """The cache of this encoder's outputs under ``data_dir``."""
    return EncoderCache(os.path.join(data_dir, CACHE_DIR, encoder_digest(encoder)),
                        predict_fn(encoder))


class CachedModel:
    """Called like the model on a batch of ids: the head on cached encoder outputs, so the
    run's evaluation reuses what was encoded for training instead of encoding it again."""

    def __init__(self, model: keras.Model, data_dir: str):
        encoder, self.head = split(model)
        self.cache = cache_for(encoder, data_dir)

    def __call__(self, ids, training: bool = False):
        return self.head(self.cache.features(np.asarray(ids)), training=False)


class HeadTraining:
    """How ``train`` runs under ``--frozen_encoder``: the head alone is fitted (every encoder
    layer frozen), on batches of cached encoder outputs, and the run is scored from the same
    cache. ``keep`` is what the best-epoch weights are taken from."""

    def __init__(self, model: keras.Model, exp):
        self.model, self.exp = model, exp
        self.trainable = self.keep = head_model(model)

    def datasets(self, task, data, tokenizer):
        """``(train, validation)`` of cached encoder outputs (see :func:`datasets`)."""
        return datasets(self.model, self.exp, data, tokenizer)

    def scorer(self):
        """The head on cached encoder outputs, called like the model."""
        return CachedModel(self.model, self.exp.data.data_dir)


def datasets(model: keras.Model, exp, data, tokenizer):
    """``(train, validation)`` batches of ``(pooled encoder output, label)`` for the head,
    the outputs read from (or added once to) the encoder cache; the test split is encoded in
    the same pass, for the run's evaluation (:class:`CachedModel`)."""
    check(exp.finetune, exp.model.model)
    if exp.dp.enabled:
        raise UserError("--frozen_encoder with DP-SGD is not supported: the cached encoder "
                        "outputs are not clipped per example. Fix: drop one of them.")
    dcfg, tcfg = exp.data, exp.train
    encoder, _ = split(model)
    cache = cache_for(encoder, dcfg.data_dir)
    out = []
    for name in ("train", "validation"):
        x = cache.features(tokenizer.encode(data.texts(name), dcfg.max_seq_len))
        y = np.asarray(data.labels(name), np.int32)
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if tcfg.label_smoothing:
            ds = ds.map(lambda f, label: (f, tf.one_hot(label, data.num_classes)))
        if name == "train":
            ds = ds.shuffle(len(y), seed=tcfg.seed, reshuffle_each_iteration=True)
        out.append(ds.batch(dcfg.batch_size).prefetch(tf.data.AUTOTUNE))
    cache.features(tokenizer.encode(data.texts("test"), dcfg.max_seq_len))
    logging.info("frozen encoder: %d texts encoded, %d read from the cache %s", cache.computed,
                 cache.reused, cache.directory)
    return tuple(out)


def cached_outputs(model: keras.Model, tokenizer, texts, max_seq_len: int,
                   data_dir: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(logits, pooled)`` of ``model`` on ``texts``: the head on cached encoder outputs (equal
    to running the whole model; ``pooled`` is the head's input, the distillation feature),
    encoding only texts the cache has not seen."""
    encoder, head = split(model)
    cache = cache_for(encoder, data_dir)
    features = cache.features(tokenizer.encode(list(texts), max_seq_len))
    logging.info("teacher outputs from cached encoder outputs: %d encoded, %d reused",
                 cache.computed, cache.reused)
    if not len(features):
        return np.zeros((0, int(head.output.shape[-1])), np.float32), features
    return np.concatenate([head(features[i:i + 1024], training=False).numpy()
                           for i in range(0, len(features), 1024)]), features
