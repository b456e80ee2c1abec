"""Token classification (named entities): CoNLL/span-JSONL data, a per-token zoo model with an
optional CRF, entity-level scores on character spans of the original text."""
import dataclasses
import os
import random
import time
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from slm_tf.data.ner_readers import NerExample, NerReadReport, read_ner
from slm_tf.data.readers import DataError
from slm_tf.data.sources import ALL, SPLITS
from slm_tf.models import build_tagger
from slm_tf.ner import offsets
from slm_tf.ner.metrics import entity_report
from slm_tf.ner.schemes import SCHEMES, detect_scheme, tag_set
from slm_tf.ner.training import decode, tagger_loss, token_accuracy
from slm_tf.tasks.base import TASKS, Task
from slm_tf.train import artifacts
from slm_tf.train.optim import optimizer_for

HEAD_METRICS = ("entity_f1", "precision", "recall", "macro_f1", "token_accuracy",
                "num_examples", "num_entities", "eval_examples_per_s")


@dataclasses.dataclass
class NerData:
    """Train/validation/test sentences, the tagging scheme and the tag names the model uses."""
    name: str
    splits: Dict[str, List[NerExample]]
    scheme: str
    tag_names: List[str]
    skipped: Dict[str, int]
    files: List[str]

    def split(self, name: str) -> List[NerExample]:
        """The sentences of one split (``all``: every sentence)."""
        if name == ALL:
            return [e for s in SPLITS for e in self.splits.get(s, [])]
        return self.splits[name]

    def texts(self, split: str) -> List[str]:
        return [e.text for e in self.split(split)]

    @property
    def types(self) -> List[str]:
        return sorted({t.split("-", 1)[1] for t in self.tag_names if "-" in t})

    def summary(self) -> Dict:
        return {"name": self.name, "scheme": self.scheme, "types": self.types,
                "num_tags": len(self.tag_names),
                "sizes": {s: len(v) for s, v in self.splits.items()},
                "entities": {s: sum(len(e.spans) for e in v) for s, v in self.splits.items()},
                "skipped_rows": dict(self.skipped),
                "skipped_rows_total": sum(self.skipped.values()), "files": self.files}


def _read(path: str, dcfg, scheme: str = "auto", known_types=None) -> NerReadReport:
    fmt = dcfg.data_format if dcfg.data_format in ("jsonl",) else "auto"
    spans_column = dcfg.label_column if dcfg.label_column != "label" else "entities"
    return read_ner(path, fmt, scheme, text_column=dcfg.text_column, spans_column=spans_column,
                    known_types=known_types, on_bad_row=dcfg.on_bad_row)


def prepare_ner_data(dcfg, tag_names: Optional[List[str]] = None) -> NerData:
    """Reads ``dcfg.data`` (and ``validation_data`` / ``test_data``); a missing split is cut
    from the training file by a seeded shuffle. ``tag_names`` (a trained run's) fixes the
    scheme and the known entity types."""
    scheme = detect_scheme(tag_names) if tag_names else "auto"
    known = sorted({t.split("-", 1)[1] for t in tag_names if "-" in t}) if tag_names else None
    main = _read(dcfg.data, dcfg, scheme, known)
    scheme = main.scheme if main.scheme in SCHEMES else "BIOES"  # span JSONL: BIOES tags
    skipped = dict(main.skipped)
    examples = list(main.examples)
    splits, files = {}, [dcfg.data]
    for name, path in (("validation", dcfg.validation_data), ("test", dcfg.test_data)):
        if path:
            rep = _read(path, dcfg, scheme if main.scheme in SCHEMES else "auto", known)
            splits[name] = rep.examples
            files.append(path)
            for k, v in rep.skipped.items():
                skipped[f"{name}/{k}"] = v
    order = list(range(len(examples)))
    random.Random(dcfg.split_seed).shuffle(order)
    cut = 0
    for name, fraction in (("test", dcfg.test_fraction), ("validation", dcfg.validation_fraction)):
        if name not in splits:
            n = int(round(fraction * len(examples)))
            splits[name] = [examples[i] for i in sorted(order[cut:cut + n])]
            cut += n
    splits["train"] = [examples[i] for i in sorted(order[cut:])]
    for name in SPLITS:
        if not splits[name] and (tag_names is None or name == "train"):
            raise DataError(f"{dcfg.data}: the {name} split is empty. Fix: give "
                            f"--{name}_data or a larger --{name}_fraction.")
    if tag_names is None:
        # Every split's types: a type seen only in test is still scored (as always missed).
        types = sorted({s.type for v in splits.values() for e in v for s in e.spans})
        tag_names = tag_set(types, scheme)
    name = os.path.splitext(os.path.basename(dcfg.data))[0]
    logging.info("NER data %s: %s sentences, scheme %s, %d tags", name,
                 {k: len(v) for k, v in splits.items()}, scheme, len(tag_names))
    return NerData(name, splits, scheme, list(tag_names), skipped, files)


@dataclasses.dataclass
class Encoded:
    """One split as model inputs: ids and targets ``[N, L]`` plus each sentence's alignment."""
    ids: np.ndarray
    targets: np.ndarray
    alignments: List[offsets.Alignment]


def encode_split(examples: List[NerExample], tokenizer, tag_names: List[str], scheme: str,
                 max_seq_len: int) -> Encoded:
    """Ids and first-subword tag targets of every sentence."""
    index = {t: i for i, t in enumerate(tag_names)}
    ids = np.zeros((len(examples), max_seq_len), np.int32)
    targets = np.full((len(examples), max_seq_len), offsets.IGNORE, np.int32)
    alignments = []
    for row, ex in enumerate(examples):
        al = offsets.align(tokenizer, ex.text)
        ids[row] = offsets.encode_ids(tokenizer, al, max_seq_len)
        try:
            targets[row] = offsets.encode_targets(al, ex.spans, scheme, index, max_seq_len)
        except ValueError as e:  # two entities inside one token/word
            raise DataError(f"{ex.source}: {e} after tokenization. Fix: align the entity "
                            "spans with word boundaries.") from None
        alignments.append(al)
    return Encoded(ids, targets, alignments)


def _encoded(data: NerData, split: str, tokenizer, max_seq_len: int) -> Encoded:
    cache = getattr(data, "_encoded", None)
    if cache is None:
        cache = data._encoded = {}
    key = (split, id(tokenizer), max_seq_len)
    if key not in cache:
        cache[key] = encode_split(data.split(split), tokenizer, data.tag_names, data.scheme,
                                  max_seq_len)
    return cache[key]


def predict_spans(model, enc: Encoded, tag_names: List[str], scheme: str, batch_size: int = 256):
    """Predicted character spans per sentence and the tag-id predictions ``[N, L]``."""
    logits = model.predict(enc.ids, batch_size=batch_size, verbose=0)
    tags = decode(model, logits, enc.targets >= 0 if enc.targets is not None else enc.ids != 0)
    spans = [offsets.decode_tags(al, row, tag_names, scheme)
             for al, row in zip(enc.alignments, tags)]
    return spans, tags


def evaluate_ner(model, data: NerData, split: str, tokenizer, max_seq_len: int,
                 tag_names: List[str], log_dir: Optional[str] = None, step: int = 0) -> Dict:
    """Entity scores on the original text's character spans, plus token accuracy."""
    enc = _encoded(data, split, tokenizer, max_seq_len)
    start = time.perf_counter()
    pred, tags = predict_spans(model, enc, tag_names, data.scheme)
    seconds = time.perf_counter() - start
    gold = [e.spans for e in data.split(split)]
    report = entity_report(gold, pred, data.types)
    tagged = enc.targets >= 0
    report["entity_f1"] = report["f1"]
    report["token_accuracy"] = float((tags == enc.targets)[tagged].mean()) if tagged.any() else 0.0
    report["num_examples"] = len(gold)
    report["eval_examples_per_s"] = len(gold) / seconds if seconds else 0.0
    if log_dir:
        with tf.summary.create_file_writer(log_dir).as_default():
            for k in ("entity_f1", "precision", "recall", "token_accuracy"):
                tf.summary.scalar(f"{split}/{k}", report[k], step=step)
            for t, v in report["per_type"].items():
                tf.summary.scalar(f"{split}/f1_{t}", v["f1"], step=step)
            rows = ["| type | precision | recall | F1 | support |", "|---|---|---|---|---|"] + [
                f"| {t} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | "
                f"{v['support']} |" for t, v in report["per_type"].items()]
            tf.summary.text(f"{split}/per_type", "\n".join(rows), step=step)
    return report


def _trim(ids, targets):
    """Cuts a padded batch to its longest sentence (padding is id 0 at the end)."""
    n = tf.reduce_max(tf.reduce_sum(tf.cast(ids != 0, tf.int32), axis=1))
    return ids[:, :n], targets[:, :n]


def length_batches(ds, batch_size: int, size: int, seed: int, window: int = 32):
    """Batches of similar lengths from a shuffled dataset of padded ``(ids, targets)``: each
    window of ``window`` batches is sorted by length, cut into batches trimmed to their
    longest sentence, and the batches are shuffled again. Still ``ceil(size / batch_size)``
    batches per epoch (the learning-rate schedule counts on it); about half the positions of
    fixed padding on MSRA."""
    def by_length(ids, targets):
        order = tf.argsort(tf.reduce_sum(tf.cast(ids != 0, tf.int32), axis=1))
        return tf.gather(ids, order), tf.gather(targets, order)

    ds = ds.batch(batch_size * window).map(by_length).unbatch().batch(batch_size).map(_trim)
    ds = ds.shuffle(window, seed=seed, reshuffle_each_iteration=True)
    return ds.apply(tf.data.experimental.assert_cardinality(-(-size // batch_size)))


@TASKS.register("ner")
class NerTask(Task):
    """Named entities: one tag per word (WordPiece) or character (char tokenizer)."""

    name = "ner"
    monitor = "val_token_accuracy"
    headline = "entity_f1"
    summary_metrics = ("entity_f1", "token_accuracy")
    artifact_files = (artifacts.LABELS_FILE,)

    def prepare_data(self, dcfg) -> NerData:
        return prepare_ner_data(dcfg)

    # Encoders whose per-token states do not depend on how far a sentence is padded (the cnn
    # tagger zeroes padding after every layer); their batches are cut to similar lengths.
    PADDING_INVARIANT = ("cnn",)
    _length_batches = False

    def build_model(self, model_cfg, tokenizer, data, dcfg):
        self._length_batches = model_cfg.model in self.PADDING_INVARIANT
        return build_tagger(model_cfg, tokenizer.vocab_size, len(data.tag_names),
                            dcfg.max_seq_len)

    def datasets(self, data, tokenizer, dcfg, tcfg):
        train = _encoded(data, "train", tokenizer, dcfg.max_seq_len)
        val = _encoded(data, "validation", tokenizer, dcfg.max_seq_len)
        train_ds = tf.data.Dataset.from_tensor_slices((train.ids, train.targets)).shuffle(
            min(len(train.ids), dcfg.shuffle_buffer), seed=tcfg.seed,
            reshuffle_each_iteration=True)
        if self._length_batches:
            train_ds = length_batches(train_ds, dcfg.batch_size, len(train.ids), tcfg.seed)
        else:
            train_ds = train_ds.batch(dcfg.batch_size)
        train_ds = train_ds.prefetch(tf.data.AUTOTUNE)
        val_ds = tf.data.Dataset.from_tensor_slices((val.ids, val.targets)).batch(
            dcfg.batch_size)
        return train_ds, val_ds

    def compile(self, model, tcfg, total_steps: int) -> None:
        model.compile(optimizer=optimizer_for(tcfg, total_steps), loss=tagger_loss(model),
                      metrics=[token_accuracy])

    def evaluate(self, model, data, split, tokenizer, dcfg, log_dir=None, step=0) -> Dict:
        return evaluate_ner(model, data, split, tokenizer, dcfg.max_seq_len, data.tag_names,
                            log_dir, step)

    def evaluate_saved(self, run, dcfg, split):
        """Entity types are matched to the run's by name; another type is an error (or, with
        ``on_bad_row=skip``, that sentence is skipped and counted)."""
        data = prepare_ner_data(dcfg, tag_names=run.label_names)
        log_dir = os.path.join(run.run_dir, artifacts.LOG_DIR, f"eval_{data.name}_{split}")
        report = evaluate_ner(run.model, data, split, run.tokenizer, run.max_seq_len,
                              run.label_names, log_dir)
        return report, data

    def run_metrics(self, test: Dict, validation: Dict) -> Dict:
        return {**{k: test[k] for k in HEAD_METRICS},
                "validation": {k: validation[k] for k in ("entity_f1", "token_accuracy")},
                "per_type": test["per_type"], "type_confusion": test["type_confusion"]}

    def save_artifacts(self, run_dir: str, data) -> None:
        artifacts.save_labels(run_dir, data.tag_names)

    def label_names(self, data):
        return list(data.tag_names)

    def calibration_inputs(self, run, count: int):
        """Id rows of an evenly spaced sample of the run's own training sentences, read with
        the NER reader and encoded exactly as in training."""
        from slm_tf.config import from_dict
        from slm_tf.data.config import DataConfig
        dcfg = from_dict(DataConfig, run.config["data"])
        sentences = prepare_ner_data(dcfg, tag_names=run.label_names).split("train")
        sample = sentences[::max(1, len(sentences) // count)][:count]
        return np.stack([offsets.encode_ids(run.tokenizer, offsets.align(run.tokenizer, e.text),
                                            run.max_seq_len) for e in sample])
