"""``export_run``: a finished (trained, distilled or compressed) run -> deployable files.

Writes into ``output_dir``: one file per requested format, the Android bundle (when a TFLite
format is exported) and ``export.json``, a manifest the benchmark reads.

What is written depends on the run's task: :data:`EXPORTERS` maps a task name to its exporter
``(run, cfg, out) -> manifest``. The classification exporter is defined here and serves every
task without its own; a task's own exporter lives in ``slm_tf/export/<task>.py`` and registers
itself in :data:`EXPORTERS` when that module is imported (``export_run`` imports it).
"""
import dataclasses
import importlib
import importlib.util
import os
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from slm_tf.config import from_dict
from slm_tf.data.config import DataConfig
from slm_tf.data.pipeline import prepare_data
from slm_tf.errors import UserError
from slm_tf.export.bundle import write_bundle
from slm_tf.export.config import EXPORT_FORMATS, TFLITE_FORMATS, ExportConfig
from slm_tf.export.onnx import to_onnx
from slm_tf.export.tflite import is_quantization_aware, to_tflite
from slm_tf.io_utils import atomic_path, file_digest, require_output_dir, write_json
from slm_tf.registry import Registry
from slm_tf.serving.drift import REFERENCE_FILE, histograms
from slm_tf.train.artifacts import (EXPORT_DIR, MODEL_FILE, Run, load_run, require_complete,
                                    save_saved_model)
from slm_tf.trust.serving import ServingHead, load_head

MANIFEST = "export.json"
FORMATS: Registry[Callable] = Registry("export format", EXPORT_FORMATS)
EXPORTERS: Registry[Callable] = Registry("task exporter")
DEFAULT_EXPORTER = "classification"


@dataclasses.dataclass
class _Context:
    run: Run
    cfg: ExportConfig
    head: ServingHead = ServingHead()

    def calibration_ids(self) -> np.ndarray:
        """Model inputs from the run's own training split (the task's calibration hook)."""
        from slm_tf.tasks import get_task
        return get_task(self.run.task).calibration_inputs(self.run,
                                                          self.cfg.calibration_examples)


def _tflite(quantization: str):
    def write(ctx: _Context, path: str) -> Dict:
        qat = is_quantization_aware(ctx.run.model)
        calibrate = quantization == "int8" and not qat
        data = to_tflite(ctx.run.model, quantization, ctx.run.max_seq_len,
                         ctx.calibration_ids() if calibrate else None, ctx.cfg.allow_flex,
                         ctx.head)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
        info = {"quantization": quantization, "calibrated": calibrate,
                "quantization_aware": qat}
        if ctx.cfg.dynamic_batch:
            data = to_tflite(ctx.run.model, quantization, ctx.run.max_seq_len,
                             ctx.calibration_ids() if calibrate else None, ctx.cfg.allow_flex,
                             ctx.head, batch=None)
            info["dynamic_batch_path"] = dynamic_batch_name(os.path.basename(path))
            with atomic_path(os.path.join(os.path.dirname(path), info["dynamic_batch_path"])) \
                    as tmp, open(tmp, "wb") as f:
                f.write(data)
        return info
    return write


for _fmt in TFLITE_FORMATS:
    FORMATS.register(_fmt)(_tflite(_fmt[len("tflite_"):]))


@FORMATS.register("onnx")
def _onnx(ctx: _Context, path: str) -> Dict:
    data = to_onnx(ctx.run.model, ctx.run.max_seq_len, ctx.head)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return {}


@FORMATS.register("saved_model")
def _saved_model(ctx: _Context, path: str) -> Dict:
    save_saved_model(path, ctx.run.model, ctx.run.tokenizer, ctx.run.max_seq_len, ctx.head)
    return {"signatures": ["serving_default (ids)", "serve_text (raw strings)"]}


FORMATS.check_complete()


def file_name(fmt: str) -> str:
    """``tflite_int8`` -> ``model_int8.tflite``; ``onnx`` -> ``model.onnx``."""
    if fmt.startswith("tflite_"):
        return f"model_{fmt[len('tflite_'):]}.tflite"
    return {"onnx": "model.onnx", "saved_model": "saved_model"}[fmt]


def dynamic_batch_name(tflite_file: str) -> str:
    """``model_int8.tflite`` -> ``model_int8_batch.tflite`` (the dynamic-batch variant)."""
    return tflite_file[:-len(".tflite")] + "_batch.tflite"


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def write_reference(ctx: _Context, out: str) -> Optional[str]:
    """Writes ``reference.json``: histograms of the model's predicted labels and confidences
    on the run's test split, the baseline the server's drift monitor compares traffic with
    (None, and a log line, when the run has no test split)."""
    try:
        texts = prepare_data(from_dict(DataConfig, ctx.run.config["data"]),
                             required_splits=()).texts("test")
    except UserError as e:  # the training data is not on this machine: export the rest
        logging.warning("no %s: %s", REFERENCE_FILE, str(e).splitlines()[0])
        return None
    if not texts:
        logging.info("no test split: no %s (the server's drift gauge stays off)",
                     REFERENCE_FILE)
        return None
    ids = ctx.run.tokenizer.encode(texts, ctx.run.max_seq_len)
    # Through the exported head (fitted temperature included), as the served files compute.
    logits = tf.constant(ctx.run.model.predict(ids, batch_size=256, verbose=0))
    probs = ctx.head.outputs(logits)["probabilities"].numpy()
    path = os.path.join(out, REFERENCE_FILE)
    write_json(path, {"split": "test", **histograms(probs.argmax(-1), probs.max(-1),
                                                    ctx.run.label_names)})
    return path


def exporter_for(task: str) -> Callable:
    """The exporter of ``task``: its own (``slm_tf/export/<task>.py``) or the classifier's."""
    if importlib.util.find_spec(f"slm_tf.export.{task}") is not None:
        importlib.import_module(f"slm_tf.export.{task}")  # registers itself in EXPORTERS
    return EXPORTERS.get(task if task in EXPORTERS else DEFAULT_EXPORTER)


def export_run(cfg: ExportConfig) -> Dict:
    """Exports ``cfg.run_dir`` to every format in ``cfg.formats``; returns the manifest."""
    for fmt in cfg.formats:
        FORMATS.get(fmt)
    require_complete(cfg.run_dir)
    out = cfg.output_dir or os.path.join(cfg.run_dir, EXPORT_DIR)
    require_output_dir(out)
    run = load_run(cfg.run_dir)
    os.makedirs(out, exist_ok=True)
    manifest = exporter_for(run.task)(run, cfg, out)
    write_json(os.path.join(out, MANIFEST), manifest)
    return manifest


def base_manifest(run: Run, cfg: ExportConfig, out: str, files: List[Dict]) -> Dict:
    """The manifest fields every task's export has (the benchmark and freshness check read
    them)."""
    # run_dir relative to the export, so a copied run folder (run + export/) still benchmarks;
    # the model's digest lets the benchmark refuse an export older than the model.
    return {"run_dir": os.path.relpath(os.path.abspath(cfg.run_dir), os.path.abspath(out)),
            "model_sha1": file_digest(os.path.join(cfg.run_dir, MODEL_FILE)),
            "name": run.model.name, "max_seq_len": run.max_seq_len,
            "label_names": run.label_names, "data": run.config["data"], "task": run.task,
            "files": files, "android": None}


def write_formats(formats: Registry, ctx, out: str) -> List[Dict]:
    """Writes each of ``ctx.cfg.formats`` with its writer in ``formats``; the manifest rows."""
    files: List[Dict] = []
    for fmt in ctx.cfg.formats:
        start = time.time()
        path = os.path.join(out, file_name(fmt))
        info = formats.get(fmt)(ctx, path)
        files.append({"format": fmt, "path": file_name(fmt), "file_bytes": _size(path),
                      "seconds": round(time.time() - start, 2), **info})
        logging.info("exported %s: %s (%d bytes, %.1f s)", fmt, path, files[-1]["file_bytes"],
                     files[-1]["seconds"])
    return files


def bundle_choice(cfg: ExportConfig, files: List[Dict]) -> Optional[str]:
    """The TFLite format that goes into the Android bundle (None when none was exported)."""
    tflite = [f["format"] for f in files if f["format"] in TFLITE_FORMATS]
    if cfg.bundle_format != "auto" and cfg.bundle_format not in tflite:
        raise UserError(f"--bundle_format={cfg.bundle_format} was not exported; add it to "
                        "--formats")
    if not tflite:
        return None
    return cfg.bundle_format if cfg.bundle_format != "auto" else min(tflite,
                                                                     key=TFLITE_FORMATS.index)


@EXPORTERS.register(DEFAULT_EXPORTER)
def export_classifier(run: Run, cfg: ExportConfig, out: str) -> Dict:
    """Classifier (and, until they have their own, other tasks') files, bundle and manifest."""
    ctx = _Context(run, cfg, load_head(cfg.run_dir))
    files = write_formats(FORMATS, ctx, out)
    manifest = {**base_manifest(run, cfg, out, files), "temperature": ctx.head.temperature,
                "abstain_rule": ctx.head.rule, "reference": None}
    if run.task == "classification":
        reference = write_reference(ctx, out)
        manifest["reference"] = reference and os.path.basename(reference)
    chosen = bundle_choice(cfg, files)
    if chosen:
        bundle = write_bundle(out, os.path.join(out, file_name(chosen)), chosen, run.tokenizer,
                              run.max_seq_len, run.label_names, run.model.name, ctx.head)
        manifest["android"] = {"dir": os.path.basename(bundle), "format": chosen}
    return manifest


def exported_run_dir(export_dir: str, manifest: Dict) -> str:
    """The run an export came from: ``run_dir`` resolved against the export directory."""
    return os.path.normpath(os.path.join(os.path.abspath(export_dir), manifest["run_dir"]))


def check_fresh(export_dir: str, manifest: Dict) -> str:
    """The export's run directory; a UserError when its model changed after the export."""
    run_dir = exported_run_dir(export_dir, manifest)
    model = os.path.join(run_dir, MODEL_FILE)
    fix = (f"Fix: re-export: python scripts/export.py --run_dir={run_dir} "
           f"--output_dir={export_dir}")
    if not os.path.exists(model):
        raise UserError(f"{export_dir}: the run it was exported from has no {model}. {fix}")
    recorded = manifest.get("model_sha1")
    if recorded is None:
        raise UserError(f"{export_dir}/{MANIFEST} records no digest of the model it was "
                        f"exported from (an older export). {fix}")
    if file_digest(model) != recorded:
        raise UserError(f"{export_dir} is older than {model}: the model's SHA-1 differs from "
                        f"the one recorded in {MANIFEST} at export time (the run was retrained "
                        f"after the export). {fix}")
    return run_dir
