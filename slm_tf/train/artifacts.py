"""A run directory: what training writes and what evaluation/export read back.

Layout: ``model.keras``, ``saved_model/`` (serving signatures on ids and on raw text),
``tokenizer/`` (``vocab.txt``, ``tokenizer.json``), ``labels.json``, ``config.json`` (every
flag), ``metrics.json`` (written last: its presence marks a complete run), ``logs/``
(TensorBoard) and ``checkpoints/``.
"""
import dataclasses
import json
import os
import shutil
import zipfile
from typing import Dict, List, Optional

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops the SavedModel uses)
import tf_keras as keras
from absl import logging

from slm_tf.errors import CorruptArtifactError, UserError
from slm_tf.io_utils import atomic_path, read_json, write_json
from slm_tf.models import INPUT_NAME
from slm_tf.tokenizers import Tokenizer, load_tokenizer
from slm_tf.trust.serving import ServingHead

MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
TOKENIZER_DIR = "tokenizer"
LABELS_FILE = "labels.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
LOG_DIR = "logs"
CHECKPOINT_DIR = "checkpoints"
EXPORT_DIR = "export"
EVAL_DIR = "eval"
COMPRESSION_REPORT = "compression.json"
# What --overwrite removes: everything derived from the old model. metrics.json goes first, so
# a clear that is interrupted leaves an incomplete run (retrained from scratch), never a
# complete-looking one. The tokenizer, labels and config are rewritten by the new run.
DERIVED = (METRICS_FILE, MODEL_FILE, SAVED_MODEL_DIR, EXPORT_DIR, EVAL_DIR, LOG_DIR,
           CHECKPOINT_DIR, COMPRESSION_REPORT)


@dataclasses.dataclass
class Run:
    """A loaded run: the Keras model, its tokenizer, label names and config."""
    run_dir: str
    model: keras.Model
    tokenizer: Tokenizer
    label_names: List[str]
    config: Dict

    @property
    def max_seq_len(self) -> int:
        return int(self.config["data"]["max_seq_len"])

    @property
    def task(self) -> str:
        """The registered task name the run was trained for."""
        from slm_tf.tasks import DEFAULT_TASK
        return self.config.get("train", {}).get("task", DEFAULT_TASK)


class _Untracked:
    """Calls a Keras model without making it part of a SavedModel's object graph."""

    def __init__(self, model):
        self._call = model.__call__

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)


def _layer_traces_savable(model) -> bool:
    """False for a quantization-aware model with recurrent layers (see ``_Serving``)."""
    from slm_tf.export.graph import has_recurrent_layers
    if not has_recurrent_layers(model):
        return True
    from slm_tf.compress.quantization import is_quantized  # tfmot: only for recurrent models
    return not is_quantized(model)


class _Serving(tf.Module):
    """SavedModel wrapper: logits and probabilities from ids, or from raw text."""

    def __init__(self, model, tokenizer: Tokenizer, max_seq_len: int, head: ServingHead):
        super().__init__()
        if _layer_traces_savable(model):
            self.model = model
        else:
            # Only the variables are tracked: Keras would also save each layer's own call,
            # and a QAT recurrent layer's call reads its cell kernel as a fake-quantized tensor
            # of the wrapper's graph, which a SavedModel cannot capture.
            self.model_variables = list(model.variables)
            self.__dict__["model"] = _Untracked(model)
        self.head = head
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        tokenizer.tf_encode(tf.constant(["warm up"]), max_seq_len)  # build lookup tables
        # Track the tokenizer's TF resources so the SavedModel carries them.
        self.tokenizer_resources = [v for v in vars(tokenizer).values()
                                    if isinstance(v, (tf.Module, tf.lookup.StaticHashTable))]

    def _outputs(self, ids):
        return self.head.outputs(self.model(ids, training=False))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name=INPUT_NAME)])
    def serve_ids(self, ids):
        return self._outputs(ids)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        return self._outputs(self.tokenizer.tf_encode(text, self.max_seq_len))


def save_saved_model(path: str, model, tokenizer: Tokenizer, max_seq_len: int,
                     head: ServingHead = ServingHead()) -> None:
    """SavedModel with ``serving_default`` (ids) and ``serve_text`` (raw strings) signatures;
    ``head`` applies the run's temperature (and abstention rule) in the graph."""
    module = _Serving(model, tokenizer, max_seq_len, head)
    with atomic_path(path, is_dir=True) as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve_ids,
                                                     "serve_text": module.serve_text})


def save_model(run_dir: str, model, tokenizer: Tokenizer, max_seq_len: int,
               head: ServingHead = ServingHead()) -> None:
    """Writes ``model.keras`` (raw logits) and ``saved_model/`` (through ``head``) atomically."""
    with atomic_path(os.path.join(run_dir, MODEL_FILE)) as tmp:
        model.save(tmp)
    save_saved_model(os.path.join(run_dir, SAVED_MODEL_DIR), model, tokenizer, max_seq_len,
                     head)


def save_labels(run_dir: str, label_names: List[str]) -> None:
    write_json(os.path.join(run_dir, LABELS_FILE), list(label_names))


COMMON_FILES = (MODEL_FILE, SAVED_MODEL_DIR, TOKENIZER_DIR, CONFIG_FILE, METRICS_FILE)


def run_task(run_dir: str) -> str:
    """The task a run directory was trained for (``config.json``; runs from before tasks
    existed are classification runs)."""
    from slm_tf.tasks import DEFAULT_TASK
    path = os.path.join(run_dir, CONFIG_FILE)
    config = read_json(path) if os.path.exists(path) else {}
    train = config.get("train") if isinstance(config, dict) else None
    return train.get("task", DEFAULT_TASK) if isinstance(train, dict) else DEFAULT_TASK


def clear_derived(run_dir: str) -> None:
    """Removes the model and everything derived from it (see ``DERIVED``) from ``run_dir``."""
    for name in DERIVED:
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def warn_resumed(runs: Dict[str, dict]) -> List[str]:
    """Names of the runs (name -> metrics) that were resumed after an interruption, logged as
    a warning: after the resume such a run sees other batches and dropout masks than its
    uninterrupted twin (README, "What is and is not reproducible"), so a benchmark mixing
    the two compares unlike runs."""
    names = [name for name, m in runs.items() if m.get("resumed_at_epoch")]
    if names:
        logging.warning("runs resumed after an interruption: %s; a resumed run is not the "
                        "uninterrupted one: compare it as another seed, or rerun it from "
                        "scratch", ", ".join(names))
    return names


def is_complete(run_dir: str) -> bool:
    """True when every artifact of a finished run (of its task) is present."""
    return not _missing(run_dir)


def _missing(run_dir: str) -> List[str]:
    from slm_tf.tasks import get_task
    needed = list(COMMON_FILES)
    if os.path.exists(os.path.join(run_dir, CONFIG_FILE)):
        try:
            needed += get_task(run_task(run_dir)).artifact_files
        except (UserError, ValueError):
            pass  # a damaged config.json is reported when the run is loaded
    return [n for n in needed if not os.path.exists(os.path.join(run_dir, n))]


def require_complete(run_dir: str, flag: str = "--run_dir") -> None:
    """A UserError unless ``run_dir`` holds a finished run (cheap: checks names only)."""
    if not run_dir or not os.path.isdir(run_dir):
        raise UserError(f"{run_dir or '(empty)'}: no such run folder. Fix: point {flag} at the "
                        "--output_dir of a finished train.py/distill.py/compress.py run.")
    missing = _missing(run_dir)
    if missing:
        raise UserError(f"{run_dir}: not a complete run (missing {', '.join(missing)}). "
                        f"Fix: point {flag} at the --output_dir of a finished "
                        "train.py/distill.py/compress.py run, or rerun the one that wrote it.")


# Keras v3 archives hold exactly these; anything else (an HDF5 or SavedModel file renamed to
# .keras) would go through Keras' legacy loaders, which deserialize Lambda layers and so run
# code from the file whatever safe_mode says.
_KERAS_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Layers that carry Python or arbitrary TF functions; no model slm_tf builds contains one.
_CODE_LAYERS = ("Lambda", "__lambda__", "TFOpLambda", "SlicingOpLambda")
# Modules a config may name to find a class or function: Keras, tfmot and our own layers.
# Keras imports any other named module and may hand back any function in it.
_TRUSTED_MODULES = ("keras", "tf_keras", "tensorflow_model_optimization", "slm_tf", "builtins")


def _code_in_config(obj) -> Optional[str]:
    """What in a Keras config would load code: a code-carrying layer or an untrusted module."""
    if isinstance(obj, dict):
        if obj.get("class_name") in _CODE_LAYERS:
            return f"a {obj['class_name']} layer (Python code)"
        module = obj.get("module")
        if isinstance(module, str) and module.split(".")[0] not in _TRUSTED_MODULES:
            return f"a reference to the module {module!r}"
        children = obj.values()
    elif isinstance(obj, list):
        children = obj
    else:
        return None
    for child in children:
        found = _code_in_config(child)
        if found:
            return found
    return None


def load_keras_model(path: str, fix: str = "rerun the train.py/distill.py/compress.py "
                     "command that wrote this run") -> keras.Model:
    """Loads a Keras v3 ``.keras`` archive in safe mode; refuses anything that could run code
    (not a zip archive, a Lambda layer, a foreign module) and names the file and the reason."""
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: expected a .keras archive")  # Keras goes legacy otherwise
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_HDF5_SIGNATURE):
        raise UserError(f"{path}: refused: an HDF5 (legacy Keras) file, not a Keras v3 archive; "
                        "loading it could run code stored in it (Lambda layers). Fix: use a "
                        f"model.keras written by slm_tf, or {fix}.")
    if not zipfile.is_zipfile(path):
        raise CorruptArtifactError(path, "not a Keras v3 archive (not a zip file; truncated?)",
                                   fix)
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [m for m in _KERAS_MEMBERS if m not in names]
            if missing:
                raise CorruptArtifactError(path, f"the Keras archive lacks {missing}", fix)
            config = json.loads(zf.read("config.json"))
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise CorruptArtifactError(path, f"unreadable Keras archive ({e})", fix) from e
    code = _code_in_config(config)
    if code:
        raise UserError(f"{path}: refused: its config holds {code}, which would run code "
                        "from the file when loaded; slm_tf never writes one. Fix: use a "
                        f"model.keras written by slm_tf, or {fix}.")
    # Register our layers and the learning-rate schedule before deserializing.
    import slm_tf.models  # noqa: F401
    import slm_tf.train.optim  # noqa: F401
    # A quantization-aware model (compress.py --qat) holds tfmot wrappers and our
    # QuantizeConfigs; their scope is harmless for any other model.
    from slm_tf.compress.quantization import quantize_scope
    try:
        with quantize_scope():
            return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001  (any failure to rebuild the file is the file's)
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise CorruptArtifactError(path, f"Keras cannot rebuild the model ({first})", fix) from e


def load_run(run_dir: str) -> Run:
    """Loads a finished run directory; a missing or damaged artifact raises a one-line error
    naming the file."""
    require_complete(run_dir)
    fix = f"rerun the train.py/distill.py/compress.py command that wrote {run_dir}"
    model = load_keras_model(os.path.join(run_dir, MODEL_FILE), fix)
    labels_path = os.path.join(run_dir, LABELS_FILE)
    labels = read_json(labels_path, fix) if os.path.exists(labels_path) else []
    if not isinstance(labels, list) or not all(isinstance(n, str) for n in labels):
        raise CorruptArtifactError(labels_path, "not a list of label names", fix)
    config_path = os.path.join(run_dir, CONFIG_FILE)
    config = read_json(config_path, fix)
    try:
        int(config["data"]["max_seq_len"])
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptArtifactError(config_path, "lacks data.max_seq_len", fix) from e
    read_json(os.path.join(run_dir, METRICS_FILE), fix)  # the run's completion mark
    return Run(run_dir, model, load_tokenizer(os.path.join(run_dir, TOKENIZER_DIR), fix),
               labels, config)
