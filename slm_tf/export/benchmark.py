"""Measures every file of an export directory on the run's test split, each through its real
runtime in a fresh process: accuracy, macro-F1, agreement with Keras, size, peak memory and
batch-1 latency with 1 and 2 threads. Writes ``benchmark.json`` and ``benchmark.md``."""
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from typing import Dict, List

import numpy as np
from absl import logging

from slm_tf.cli import print_table
from slm_tf.config import from_dict
from slm_tf.data.config import DataConfig
from slm_tf.data.pipeline import prepare_data
from slm_tf.errors import CorruptArtifactError, UserError
from slm_tf.export.parity import MIN_AGREEMENT, agreement
from slm_tf.export.run import MANIFEST, check_fresh
from slm_tf.export.runtimes import ARRAY_OUTPUTS, check_opens
from slm_tf.export.tflite import size_breakdown
from slm_tf.io_utils import read_json, write_json, write_text
from slm_tf.registry import Registry
from slm_tf.train.artifacts import MODEL_FILE, load_run
from slm_tf.train.metrics import classification_report
from slm_tf.trust.abstention import METHODS, abstention_metrics, in_scope_prediction
from slm_tf.trust.calibration import before_after_ece, calibrated_probabilities
from slm_tf.trust.serving import load_head

RESULT_FILE = "benchmark.json"
TABLE_FILE = "benchmark.md"
# A task's own benchmark ``(export_dir, manifest, latency_queries) -> records``, registered by
# ``slm_tf/export/<task>.py``; tasks without one are measured as classifiers.
BENCHMARKS: Registry = Registry("task benchmark")
COLUMNS = ("format", "file_bytes", "accuracy", "macro_f1", "agreement", "ece_before",
           "ece_after", "oos_recall", "abstain_cost_points", "p50_ms_1t", "p95_ms_1t", "p50_ms_2t", "p95_ms_2t", "peak_rss_bytes")


def _measure_in_child(path: str, ids_file: str, threads: int, queries: int) -> Dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.npz")
        proc = subprocess.run([sys.executable, "-m", "slm_tf.export.runtimes", path, ids_file,
                               out, str(threads), str(queries)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"{path}: the runtime failed (exit {proc.returncode}):\n"
                            f"{proc.stderr.strip()[-1500:]}")
        with np.load(out) as r:
            return {k: r[k] if k in ARRAY_OUTPUTS else r[k].item() for k in r.files}


def benchmark_export(export_dir: str, latency_queries: int = 300,
                     lm_options: Dict = None) -> List[Dict]:
    """One record per exported file (plus the Keras reference), written to ``export_dir``
    (a language model's export goes to :mod:`slm_tf.export.lm_benchmark` with
    ``lm_options``)."""
    manifest_path = os.path.join(export_dir, MANIFEST)
    if not os.path.exists(manifest_path):
        raise UserError(f"{export_dir}: no {MANIFEST}. Fix: point --export_dir at the "
                        "--output_dir of scripts/export.py")
    fix = "rerun scripts/export.py for this run"
    manifest = read_json(manifest_path, fix)
    missing = [k for k in ("run_dir", "data", "files") if k not in manifest] \
        if isinstance(manifest, dict) else ["everything"]
    if missing:
        raise CorruptArtifactError(manifest_path, f"lacks {missing}", fix)
    for f in manifest["files"]:  # fail in a second, not after the Keras reference has run
        if manifest.get("task") != "lm":  # (LM files hold two signatures: checked on use)
            check_opens(os.path.join(export_dir, f["path"]), fix)
    if manifest.get("task") == "lm":
        from slm_tf.export.lm_benchmark import benchmark_lm_export
        return benchmark_lm_export(export_dir, manifest, load_run(check_fresh(export_dir,
                                                                              manifest)),
                                   **(lm_options or {}))
    task = manifest.get("task", "classification")
    if importlib.util.find_spec(f"slm_tf.export.{task}") is not None:
        importlib.import_module(f"slm_tf.export.{task}")  # registers its benchmark, if any
    if task in BENCHMARKS:
        return BENCHMARKS.get(task)(export_dir, manifest, latency_queries)
    run = load_run(check_fresh(export_dir, manifest))
    data = prepare_data(from_dict(DataConfig, manifest["data"]))
    ids = run.tokenizer.encode(data.texts("test"), run.max_seq_len)
    labels = np.asarray(data.labels("test"))
    reference = run.model.predict(ids, batch_size=256, verbose=0)
    names = run.label_names
    # The temperature folded into the files (export.json), else the run's own.
    temperature = float(manifest.get("temperature") or load_head(run.run_dir).temperature)

    rule = manifest.get("abstain_rule")
    oos_index = rule and rule.get("oos_index")
    is_oos = labels == oos_index if oos_index is not None else np.zeros(len(labels), bool)

    def abstention(logits, score, flags=None):
        """The file's abstention on the test split: its own score and in-graph flag (the
        Keras row applies the rule to its logits), at the threshold chosen on validation."""
        if not rule or not is_oos.any() or is_oos.all():
            return {}
        m = abstention_metrics(score, labels, is_oos, in_scope_prediction(logits, oos_index),
                               rule["threshold"], flags)
        return {"abstention": {"method": rule["method"], **m},
                "oos_recall": m["oos_recall"], "abstain_cost_points": m["accuracy_cost_points"]}

    def record(fmt, file_bytes, logits, calibration, **extra):
        rep = classification_report(labels, logits, names)
        return {"format": fmt, "file_bytes": file_bytes, "accuracy": rep["accuracy"],
                "calibration": calibration,
                "macro_f1": rep["macro_f1"], "agreement": agreement(reference, logits),
                "min_agreement": MIN_AGREEMENT.get(fmt), **extra,
                "ece": rep["ece"], "reliability": rep["reliability"],
                "per_class_f1": {k: v["f1"] for k, v in rep["per_class"].items()},
                "confusion_matrix": rep["confusion_matrix"]}

    # The Keras model gives raw logits; the run's temperature calibrates them.
    records = [record("keras", os.path.getsize(os.path.join(run.run_dir, MODEL_FILE)),
                      reference, before_after_ece(
                          labels, reference, calibrated_probabilities(reference, temperature),
                          temperature), p50_ms_1t=None, p95_ms_1t=None, p50_ms_2t=None,
                      p95_ms_2t=None, peak_rss_bytes=None, path=MODEL_FILE,
                      **abstention(reference, METHODS.get(rule["method"])(
                          reference, temperature, oos_index) if rule else None))]
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = os.path.join(tmp, "ids.npy")
        np.save(ids_file, ids)
        for f in manifest["files"]:
            logging.info("benchmarking %s (%d test rows, %d latency queries)", f["format"],
                         len(ids), latency_queries)
            path = os.path.join(export_dir, f["path"])
            m = _measure_in_child(path, ids_file, 1, latency_queries)
            two = _measure_in_child(path, ids_file, 2, latency_queries)
            m.update(p50_ms_2t=two["p50_ms_2t"], p95_ms_2t=two["p95_ms_2t"])
            logits = m.pop("logits")
            # An exported graph divides the logits by T itself: its own probabilities are the
            # calibrated ones, and logits * T are the model's raw ones.
            probs = m.pop("probabilities", None)
            calibration = before_after_ece(
                labels, logits * temperature,
                probs if probs is not None else calibrated_probabilities(logits, 1.0),
                temperature)
            score, flags = m.pop("oos_score", None), m.pop("abstain", None)
            if score is not None:
                m.update(abstention(logits, score.reshape(-1), flags.reshape(-1) > 0.5))
            if path.endswith(".tflite"):
                with open(path, "rb") as fh:
                    m["size_breakdown"] = size_breakdown(fh.read())
            records.append(record(f["format"], f["file_bytes"], logits, calibration,
                                  path=f["path"], **m))
    _compare_with_float(records)
    for r in records:
        r["parity_ok"] = r["min_agreement"] is None or r["agreement"] >= r["min_agreement"]
    write_json(os.path.join(export_dir, RESULT_FILE), records)
    rows = [[_cell(r.get(c, r["calibration"].get(c))) for c in COLUMNS] for r in records]
    write_text(os.path.join(export_dir, TABLE_FILE), print_table(rows, COLUMNS) + "\n")
    return records


def _compare_with_float(records: List[Dict]) -> None:
    """Adds each file's size and 1-thread p50 as a fraction of the float TFLite file's."""
    base = next((r for r in records if r["format"] == "tflite_float"), None)
    if base is None:
        return
    for r in records:
        if r["p50_ms_1t"] is None:
            continue
        r["bytes_vs_tflite_float"] = r["file_bytes"] / base["file_bytes"]
        r["p50_1t_vs_tflite_float"] = r["p50_ms_1t"] / base["p50_ms_1t"]


def _cell(v):
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)
