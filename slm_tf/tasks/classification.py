"""Text classification: one label per text, a pooled zoo model, cross-entropy, accuracy."""
import os
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging

from slm_tf.data.pipeline import PreparedData, make_dataset, prepare_data
from slm_tf.data.readers import DataError
from slm_tf.data.sources import ALL
from slm_tf.models import build_model
from slm_tf.tasks.base import TASKS, Task
from slm_tf.train import artifacts
from slm_tf.train.baseline import tfidf_linear_baseline
from slm_tf.train.metrics import classification_report, predict_logits
from slm_tf.train.optim import optimizer_for
from slm_tf.train.tensorboard import write_evaluation
from slm_tf.trust.evaluate import run_trust

# The test metrics copied to the head of metrics.json (the rest stays per class below them).
HEAD_METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "ece",
                "num_examples", "eval_examples_per_s")


PREDICTIONS = "_predictions"


def build_classifier(model_cfg, tokenizer, data: PreparedData, dcfg) -> keras.Model:
    """A fresh zoo classifier for ``tokenizer``; one that learns statistics of its inputs
    before training (tfidf's IDF) learns them from the training split here."""
    model = build_model(model_cfg, tokenizer.vocab_size, data.num_classes, dcfg.max_seq_len,
                        tokenizer)
    if hasattr(model, "learn_statistics"):
        train = make_dataset(data, "train", tokenizer, dcfg, training=False)
        logging.info("%s: %s", model.name, model.learn_statistics(ids for ids, _ in train))
    return model


def supervised_datasets(data: PreparedData, tokenizer, dcfg, tcfg):
    """``(train, validation)`` batches of ids and labels (one-hot with label smoothing)."""
    train_ds = make_dataset(data, "train", tokenizer, dcfg, training=True, seed=tcfg.seed)
    val_ds = make_dataset(data, "validation", tokenizer, dcfg, training=False)
    if tcfg.label_smoothing:
        one_hot = lambda x, y: (x, tf.one_hot(y, data.num_classes))
        train_ds, val_ds = train_ds.map(one_hot), val_ds.map(one_hot)
    return train_ds, val_ds


def classification_loss(label_smoothing: float) -> keras.losses.Loss:
    """Cross-entropy on logits; categorical (one-hot targets) when smoothing labels."""
    if label_smoothing:
        return keras.losses.CategoricalCrossentropy(from_logits=True,
                                                    label_smoothing=label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def compile_supervised(model: keras.Model, tcfg, total_steps: int) -> None:
    """Compiles ``model`` for hard-label training with the run's optimizer and loss."""
    model.compile(optimizer=optimizer_for(tcfg, total_steps),
                  loss=classification_loss(tcfg.label_smoothing), metrics=["accuracy"])


def evaluate_split(model, data: PreparedData, split: str, tokenizer, data_cfg, label_names,
                   log_dir: Optional[str] = None, step: int = 0, label_remap=None) -> Dict:
    """Metrics of ``model`` on one split; optionally also written to TensorBoard."""
    ds = make_dataset(data, split, tokenizer, data_cfg, training=False, label_remap=label_remap)
    start = time.perf_counter()
    logits, labels = predict_logits(model, ds)
    seconds = time.perf_counter() - start
    report = classification_report(labels, logits, label_names)
    report["eval_examples_per_s"] = len(labels) / seconds if seconds else 0.0
    # For calibration and abstention (Task.trust); run_metrics never copies it to metrics.json.
    report[PREDICTIONS] = (logits, labels, list(label_names))
    if log_dir:
        write_evaluation(log_dir, step, split, report, data.texts(split, label_remap), labels,
                         logits, label_names)
    return report


@TASKS.register("classification")
class ClassificationTask(Task):
    """Whole-text labels: CSV/TSV/JSONL/folders or a registered dataset."""

    name = "classification"
    summary_metrics = ("accuracy", "macro_f1")
    artifact_files = (artifacts.LABELS_FILE,)

    def prepare_data(self, dcfg) -> PreparedData:
        return prepare_data(dcfg)

    def build_model(self, model_cfg, tokenizer, data, dcfg):
        return build_classifier(model_cfg, tokenizer, data, dcfg)

    def datasets(self, data, tokenizer, dcfg, tcfg):
        return supervised_datasets(data, tokenizer, dcfg, tcfg)

    def compile(self, model, tcfg, total_steps: int) -> None:
        compile_supervised(model, tcfg, total_steps)

    def evaluate(self, model, data, split, tokenizer, dcfg, log_dir=None, step=0) -> Dict:
        return evaluate_split(model, data, split, tokenizer, dcfg, data.label_names, log_dir,
                              step)

    def evaluate_saved(self, run, dcfg, split):
        """Labels are matched to the run's labels by name; a label the model never saw is an
        error (or, with ``on_bad_row=skip``, those rows are skipped and counted)."""
        data = prepare_data(dcfg, required_splits=() if split == ALL else (split,))
        index = {name: i for i, name in enumerate(run.label_names)}
        unknown = sorted(set(data.label_names) - set(index))
        bad = [ex for ex in data.splits.split(split) if ex.label in unknown]
        if bad and dcfg.on_bad_row != "skip":
            raise DataError(f"{bad[0].source}: label {bad[0].label!r} is not one of the model's "
                            f"{len(index)} labels ({len(bad)} rows have unknown labels: "
                            f"{unknown[:5]}). Fix: evaluate on data with the model's labels, or "
                            "pass --on_bad_row=skip to skip those rows (they are counted).")
        if bad:
            data.splits.skipped["label_unknown_to_model"] += len(bad)
        remap = [index.get(name, -1) for name in data.label_names]
        log_dir = os.path.join(run.run_dir, artifacts.LOG_DIR, f"eval_{data.name}_{split}")
        report = evaluate_split(run.model, data, split, run.tokenizer, dcfg, run.label_names,
                                log_dir=log_dir, label_remap=remap)
        return report, data

    def run_metrics(self, test: Dict, validation: Dict) -> Dict:
        return {**{k: test[k] for k in HEAD_METRICS},
                "validation": {k: validation[k] for k in ("accuracy", "macro_f1")},
                "per_class": test["per_class"], "confusion_matrix": test["confusion_matrix"]}

    def trust(self, validation: Dict, test: Dict, tcfg, run_dir: str) -> Dict:
        (val_logits, val_labels, names), (test_logits, test_labels, _) = (
            validation[PREDICTIONS], test[PREDICTIONS])
        return run_trust(val_logits, val_labels, test_logits, test_labels, names, tcfg,
                         run_dir)

    def class_weight(self, data, scheme: str):
        """"balanced": n / (classes x count of the class), as scikit-learn's
        ``compute_class_weight`` gives."""
        if scheme == "none":
            return None
        from sklearn.utils.class_weight import compute_class_weight
        y = np.asarray(data.labels("train"))
        present = np.unique(y)
        weights = compute_class_weight("balanced", classes=present, y=y)
        return {int(c): float(w) for c, w in zip(present, weights)}

    def baseline(self, data) -> Dict:
        return tfidf_linear_baseline(data.texts("train"), data.labels("train"),
                                     data.texts("test"), data.labels("test"))

    def save_artifacts(self, run_dir: str, data) -> None:
        artifacts.save_labels(run_dir, data.label_names)

    def label_names(self, data):
        return list(data.label_names)

