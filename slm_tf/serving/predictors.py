"""Predictors: one export version turned into ``texts -> JSON-ready predictions``.

``PREDICTORS`` is keyed by the export's task (``export.json``'s ``task``): classification and
NER (``slm_tf/serving/ner.py``) serve exports, language models (``slm_tf/serving/lm.py``) an
export or a run directory. A predictor has ``new_runner`` (one inference callable per worker thread) and
``predict(runner, texts, params)`` (a whole batch); ``Predictor.predict`` is
``postprocess(runner(encode(texts)))``. ``RUNTIMES`` is keyed by ``--format``.
"""
import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from slm_tf.errors import UserError
from slm_tf.export.bundle import BUNDLE_DIR, LABELS_FILE, MODEL_FILE, SPEC_FILE
from slm_tf.io_utils import read_json
from slm_tf.registry import Registry
from slm_tf.serving.drift import REFERENCE_FILE
from slm_tf.tokenizers import load_tokenizer

MANIFEST = "export.json"  # slm_tf.export.run.MANIFEST, not imported: that pulls in TensorFlow
RUN_CONFIG = "config.json"  # slm_tf.train.artifacts.CONFIG_FILE (same reason)
Runner = Callable[[np.ndarray], Dict[str, np.ndarray]]
RUNTIMES: Registry[Callable[..., Runner]] = Registry("serving format")
PREDICTORS: Registry[type] = Registry("serving task")


def tflite_file(version_dir: str, manifest: Dict) -> Tuple[str, bool]:
    """(path, resizable): the dynamic-batch twin of the bundle's TFLite file when the export
    wrote one (export.py --dynamic_batch), else the bundle's static batch-1 file."""
    chosen = (manifest.get("android") or {}).get("format")
    for f in manifest.get("files", []):
        if f.get("format") == chosen and f.get("dynamic_batch_path"):
            return os.path.join(version_dir, f["dynamic_batch_path"]), True
    return os.path.join(version_dir, BUNDLE_DIR, MODEL_FILE), False


@RUNTIMES.register("tflite")
def tflite_runner(version_dir: str, input_name: str, manifest: Dict) -> Runner:
    """A LiteRT interpreter that runs a whole batch when the file's batch is dynamic.

    The phone files have a static [1, max_seq_len] input whose graph bakes batch 1 into its
    reshapes (resizing fails in allocate_tensors), so they run one row at a time; the
    dynamic-batch twin is resized (``resize_tensor_input`` + ``allocate_tensors``) to each
    batch size. An interpreter is not thread-safe: each worker thread makes its own.
    """
    from ai_edge_litert.interpreter import Interpreter
    path, resizable = tflite_file(version_dir, manifest)
    # Tensor indices come from the signature; a signature runner keeps references to the
    # interpreter's buffers (allocate_tensors then refuses), so a second interpreter runs.
    sig = Interpreter(model_path=path).get_signature_runner()
    inp = sig.get_input_details()[input_name]
    outputs = {k: d["index"] for k, d in sig.get_output_details().items()}
    del sig
    interp = Interpreter(model_path=path, num_threads=1)
    seq = int(inp["shape"][1])
    interp.resize_tensor_input(inp["index"], [1, seq], strict=False)
    interp.allocate_tensors()
    state = {"rows": 1}

    def invoke(ids: np.ndarray) -> Dict[str, np.ndarray]:
        if ids.shape[0] != state["rows"]:
            interp.resize_tensor_input(inp["index"], [ids.shape[0], seq], strict=False)
            interp.allocate_tensors()
            state["rows"] = ids.shape[0]
        interp.set_tensor(inp["index"], ids.astype(np.int32))
        interp.invoke()
        return {k: interp.get_tensor(i).copy() for k, i in outputs.items()}

    def run(ids: np.ndarray) -> Dict[str, np.ndarray]:
        if resizable:
            return invoke(ids)
        rows = [invoke(ids[i:i + 1]) for i in range(ids.shape[0])]
        return {k: np.concatenate([r[k] for r in rows]) for k in outputs}
    return run


@RUNTIMES.register("saved_model")
def saved_model_runner(version_dir: str, input_name: str, manifest: Dict) -> Runner:
    """The export's SavedModel ``serving_default`` signature (dynamic batch)."""
    import tensorflow as tf
    path = os.path.join(version_dir, "saved_model")
    if not os.path.isdir(path):
        raise UserError(f"{path}: no SavedModel in this export. Fix: export with "
                        "--formats=...,saved_model or serve --format=tflite")
    fn = tf.saved_model.load(path).signatures["serving_default"]

    def run(ids: np.ndarray) -> Dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in fn(**{input_name: tf.constant(ids, tf.int32)}).items()}
    return run


class Predictor:
    """What the server needs of a task: runners for worker threads and a batch function."""

    task = ""
    reference = None  # drift reference histograms (classification only)
    streams = False  # True when the task answers :generate

    def new_runner(self):
        """A fresh inference callable for one worker thread."""
        raise NotImplementedError

    def predict(self, runner, texts: Sequence[str], params=None) -> List[Dict]:
        """One JSON-ready prediction per text, the texts run as one batch."""
        return self.postprocess(runner(self.encode(texts)))


class BundlePredictor(Predictor):
    """A predictor over an export's Android bundle: its spec, tokenizer and labels."""

    def __init__(self, version_dir: str, fmt: str, manifest: Dict):
        bundle = os.path.join(version_dir, BUNDLE_DIR)
        fix = "re-export the run with scripts/export.py (a TFLite format writes android/)"
        self.spec = read_json(os.path.join(bundle, SPEC_FILE), fix)
        # The same pure-Python tokenizer and vocabulary the bundle's app clients implement.
        self.tokenizer = load_tokenizer(bundle, fix)
        self.max_seq_len = int(self.spec["tokenizer"]["max_seq_len"])
        with open(os.path.join(bundle, LABELS_FILE), encoding="utf-8") as f:
            self.labels = [line for line in f.read().split("\n") if line]
        self.input_name = self.spec["io"]["input_name"]
        self.version_dir, self.fmt, self.manifest = version_dir, fmt, manifest
        # A run trained on redacted text (--redact_pii) must see redacted text when serving.
        self.redact_pii = bool(manifest.get("data", {}).get("redact_pii"))
        self.fix = fix

    def redacted(self, texts: Sequence[str]) -> Sequence[str]:
        """``texts`` with PII replaced when the run was trained on redacted text."""
        if self.redact_pii:
            from slm_tf.trust.pii import redact
            return [redact(t) for t in texts]
        return texts

    def new_runner(self) -> Runner:
        """A fresh inference callable for one worker thread."""
        return RUNTIMES.get(self.fmt)(self.version_dir, self.input_name, self.manifest)


@PREDICTORS.register("classification")
class ClassificationPredictor(BundlePredictor):
    """Texts -> label, label id, confidence and the probability of every label."""

    task = "classification"

    def __init__(self, version_dir: str, fmt: str, manifest: Dict):
        super().__init__(version_dir, fmt, manifest)
        ref = os.path.join(version_dir, REFERENCE_FILE)
        self.reference = read_json(ref, self.fix) if os.path.isfile(ref) else None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), max_seq_len]`` int32 ids (PII redacted first when the run was
        trained on redacted text)."""
        return self.tokenizer.encode(self.redacted(texts), self.max_seq_len)

    def postprocess(self, outputs: Dict[str, np.ndarray]) -> List[Dict]:
        """One JSON-ready prediction per row of the model's outputs."""
        if "probabilities" in outputs:
            probs = outputs["probabilities"]
        else:  # a logits-only export
            z = outputs["logits"] - outputs["logits"].max(-1, keepdims=True)
            probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        top = probs.argmax(-1)
        # Rounded in float64 so JSON carries the short decimal (0.010953, not float32's
        # 0.010952999629...); one numpy call per batch, not a round() per probability.
        rounded = np.round(probs.astype(np.float64), 6).tolist()
        preds = [{"label": self.labels[k], "label_id": int(k), "confidence": float(p[k]),
                  "probabilities": r} for k, p, r in zip(top, probs, rounded)]
        if "abstain" in outputs:  # the export folded in an abstention rule
            for pred, flag in zip(preds, outputs["abstain"].reshape(len(preds), -1)[:, 0]):
                pred["abstained"] = bool(flag)
        return preds

    def signature(self) -> Dict:
        """TF Serving-style signature_def of the text signature."""
        return {"inputs": {"text": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}}},
                "outputs": {"label": {"dtype": "DT_STRING"},
                            "probabilities": {"dtype": "DT_FLOAT", "tensor_shape": {
                                "dim": [{"size": "-1"}, {"size": str(len(self.labels))}]}}},
                "method_name": "tensorflow/serving/predict"}


def read_manifest(version_dir: str) -> Dict:
    """``export.json`` of an export, or for a run directory (``config.json`` + ``model.keras``:
    a language model may be served from its run) a manifest naming its task."""
    path = os.path.join(version_dir, MANIFEST)
    if not os.path.isfile(path) and os.path.isfile(os.path.join(version_dir, RUN_CONFIG)):
        config = read_json(os.path.join(version_dir, RUN_CONFIG), "rerun the training")
        return {"task": config.get("train", {}).get("task", "classification"),
                "run_dir": ".", "data": config.get("data", {}), "is_run_dir": True}
    return read_json(path, "re-export the run with scripts/export.py")


def load_predictor(version_dir: str, fmt: str):
    """The predictor registered for the task of the export in ``version_dir``."""
    # The task modules register themselves; imported here so the registry is complete.
    from slm_tf.serving import lm, ner  # noqa: F401
    manifest = read_manifest(version_dir)
    return PREDICTORS.get(manifest.get("task", "classification"))(version_dir, fmt, manifest)
