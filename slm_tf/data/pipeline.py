"""From a DataConfig to batched ``(ids, label)`` tf.data pipelines over prepared TFRecords."""
import dataclasses
import hashlib
import os
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from slm_tf.data import readers, sources, tfds_builders
from slm_tf.data.config import DataConfig


@dataclasses.dataclass
class PreparedData:
    """A prepared dataset: the tfds builder, the validated splits and their bookkeeping."""
    name: str
    fingerprint: str
    label_names: List[str]
    splits: sources.Splits
    builder: tfds_builders.LocalTextClassification

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def texts(self, split: str, label_remap: Optional[List[int]] = None) -> List[str]:
        """Texts of a split, in dataset order (rows dropped by ``label_remap`` left out)."""
        index = {name: i for i, name in enumerate(self.label_names)}
        return [ex.text for ex in self.splits.split(split)
                if label_remap is None or label_remap[index[ex.label]] >= 0]

    def labels(self, split: str) -> List[int]:
        index = {name: i for i, name in enumerate(self.label_names)}
        return [index[ex.label] for ex in self.splits.split(split)]

    def raw(self, split: str) -> tf.data.Dataset:
        """The split as tfds stores it: dicts of ``text``, ``label``, ``source``."""
        if split == sources.ALL:  # tfds stores no empty split, so join the non-empty ones
            split = "+".join(s for s in sources.SPLITS if self.splits.split(s))
        return self.builder.as_dataset(split=split, shuffle_files=False)

    def summary(self) -> Dict:
        return {"name": self.name, "fingerprint": self.fingerprint,
                "num_classes": self.num_classes, "sizes": self.splits.sizes(),
                "skipped_rows": dict(self.splits.skipped),
                "skipped_rows_total": sum(self.splits.skipped.values()),
                **({"pii_redacted": dict(self.splits.pii_redacted),
                    "pii_redacted_total": sum(self.splits.pii_redacted.values())}
                   if self.splits.pii_redacted is not None else {}),
                "license": self.splits.license, "citation": self.splits.citation,
                "tfds_dir": tfds_builders.data_dir_of(self.builder)}


def prepare_data(cfg: DataConfig, required_splits=sources.SPLITS) -> PreparedData:
    """Reads and validates the source, then prepares it with tfds (once per source+options).

    Each of ``required_splits`` must be non-empty (a DataError with the fix otherwise).
    """
    splits = sources.load_splits(cfg)
    sources.require_splits(splits, cfg, required_splits)
    fp = sources.fingerprint(cfg, splits.files)
    config_name = f"{_safe(splits.name)}-{fp}"
    builder = tfds_builders.LocalTextClassification(
        config_name=config_name, label_names=splits.label_names,
        description=f"{splits.name} ({splits.license or 'user data'})",
        citation=splits.citation, data_dir=cfg.data_dir,
        splits={s: splits.split(s) for s in sources.SPLITS})
    tfds_builders.prepare(builder)
    logging.info("data %s: %s, %d classes, prepared in %s", splits.name, splits.sizes(),
                 len(splits.label_names), tfds_builders.data_dir_of(builder))
    return PreparedData(splits.name, fp, splits.label_names, splits, builder)


def prepare_corpus(path: str, data_dir: str, unit: str = "line",
                   validation_fraction: float = 0.05, seed: int = 1234,
                   on_bad_row: str = "error") -> tfds_builders.LocalTextCorpus:
    """Prepares raw domain text (a .txt file or a folder of them) as a tfds dataset.

    One document per line or per paragraph (``unit``); a deterministic ``validation`` split
    of ``validation_fraction`` of the documents. Features: ``text``, ``source`` (file:line).
    """
    report = readers.read_corpus(path, unit, on_bad_row)
    docs = report.examples
    held = set(np.random.RandomState(seed).permutation(len(docs))[
        :int(round(len(docs) * validation_fraction))].tolist())
    splits = {"train": [d for i, d in enumerate(docs) if i not in held],
              "validation": [d for i, d in enumerate(docs) if i in held]}
    h = hashlib.sha1(repr((unit, validation_fraction, seed, on_bad_row)).encode())
    for d in docs:
        h.update(d.text.encode())
    builder = tfds_builders.LocalTextCorpus(
        config_name=f"{_safe(os.path.basename(os.path.normpath(path)))}-{h.hexdigest()[:12]}",
        description=f"text corpus from {path} ({len(docs)} documents by {unit}; "
                    f"{sum(report.skipped.values())} skipped)",
        data_dir=data_dir, splits=splits)
    return tfds_builders.prepare(builder)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower())[:40] or "data"


def token_dropout(ids: tf.Tensor, tokenizer, rate: float, seed: int) -> tf.Tensor:
    """Replaces each real token (not padding, [CLS] or [SEP]) by [UNK] with probability ``rate``."""
    real = (ids != tokenizer.pad_id) & (ids != tokenizer.cls_id) & (ids != tokenizer.sep_id)
    drop = tf.random.uniform(tf.shape(ids), seed=seed) < rate
    return tf.where(real & drop, tf.constant(tokenizer.unk_id, ids.dtype), ids)


def make_dataset(data: PreparedData, split: str, tokenizer, cfg: DataConfig, training: bool,
                 seed: int = 0, label_remap: Optional[List[int]] = None) -> tf.data.Dataset:
    """Batched ``(ids[int32, B x L], label[int32, B])`` for one split.

    Text is tokenized in-graph once and cached; training batches are shuffled with ``seed``
    (a new order each epoch, the same sequence of orders for the same seed). With
    ``bucket_by_length`` training batches are padded only to their longest example.
    ``label_remap[i]`` replaces label id ``i`` (to score data against another label list);
    rows mapped to -1 are left out.
    """
    ds = data.raw(split).map(lambda r: (r["text"], tf.cast(r["label"], tf.int32)))
    if label_remap is not None:
        remap = tf.constant(label_remap, tf.int32)
        ds = ds.map(lambda t, y: (t, tf.gather(remap, y))).filter(lambda t, y: y >= 0)
    ds = ds.batch(1024).map(lambda t, y: (tokenizer.tf_encode(t, cfg.max_seq_len), y),
                            num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(data.texts(split, label_remap))))
    ds = ds.cache()
    if training:
        ds = ds.shuffle(cfg.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if cfg.token_dropout:
            ds = ds.map(lambda ids, y: (token_dropout(ids, tokenizer, cfg.token_dropout, seed), y))
    if training and cfg.bucket_by_length:
        step = max(8, cfg.max_seq_len // 8)
        bounds = list(range(step, cfg.max_seq_len, step))
        ds = ds.map(lambda ids, y: (ids[:tf.reduce_max(tf.where(ids != 0)) + 1], y))
        ds = ds.bucket_by_sequence_length(
            lambda ids, y: tf.shape(ids)[0], bucket_boundaries=bounds,
            bucket_batch_sizes=[cfg.batch_size] * (len(bounds) + 1), padded_shapes=([None], []))
    else:
        ds = ds.batch(cfg.batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)
