"""A run directory: what training writes and what evaluation/export read back.

Layout: ``model.keras``, ``saved_model/`` (serving signatures on ids and on raw text),
``tokenizer/`` (``vocab.txt``, ``tokenizer.json``), ``labels.json``, ``config.json`` (every
flag), ``metrics.json`` (written last: its presence marks a complete run), ``logs/``
(TensorBoard) and ``checkpoints/``; later steps add ``export/`` (export.py) and ``eval/``
(evaluate.py).
"""
import dataclasses
import os
import shutil
from typing import Dict, List

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops the SavedModel uses)
import tf_keras as keras

from slm_tf.errors import UserError
from slm_tf.io_utils import atomic_path, read_json, write_json
from slm_tf.models import INPUT_NAME
from slm_tf.tokenizers import Tokenizer, load_tokenizer

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


class _Serving(tf.Module):
    """SavedModel wrapper: logits and probabilities from ids, or from raw text."""

    def __init__(self, model, tokenizer: Tokenizer, max_seq_len: int):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        tokenizer.tf_encode(tf.constant(["warm up"]), max_seq_len)  # build lookup tables
        # Track the tokenizer's TF resources so the SavedModel carries them.
        self.tokenizer_resources = [v for v in vars(tokenizer).values()
                                    if isinstance(v, (tf.Module, tf.lookup.StaticHashTable))]

    def _outputs(self, ids):
        logits = self.model(ids, training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name=INPUT_NAME)])
    def serve_ids(self, ids):
        return self._outputs(ids)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        return self._outputs(self.tokenizer.tf_encode(text, self.max_seq_len))


def save_saved_model(path: str, model, tokenizer: Tokenizer, max_seq_len: int) -> None:
    """SavedModel with ``serving_default`` (ids) and ``serve_text`` (raw strings) signatures."""
    module = _Serving(model, tokenizer, max_seq_len)
    with atomic_path(path, is_dir=True) as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve_ids,
                                                     "serve_text": module.serve_text})


def save_model(run_dir: str, model, tokenizer: Tokenizer, max_seq_len: int) -> None:
    """Writes ``model.keras`` and ``saved_model/`` atomically."""
    with atomic_path(os.path.join(run_dir, MODEL_FILE)) as tmp:
        model.save(tmp)
    save_saved_model(os.path.join(run_dir, SAVED_MODEL_DIR), model, tokenizer, max_seq_len)


def save_labels(run_dir: str, label_names: List[str]) -> None:
    write_json(os.path.join(run_dir, LABELS_FILE), list(label_names))


def is_complete(run_dir: str) -> bool:
    """True when every artifact of a finished run is present."""
    needed = [MODEL_FILE, SAVED_MODEL_DIR, TOKENIZER_DIR, LABELS_FILE, CONFIG_FILE, METRICS_FILE]
    return all(os.path.exists(os.path.join(run_dir, n)) for n in needed)


def clear_derived(run_dir: str) -> None:
    """Removes the model and everything derived from it (see ``DERIVED``) from ``run_dir``."""
    for name in DERIVED:
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def load_run(run_dir: str) -> Run:
    """Loads a finished run directory."""
    if not is_complete(run_dir):
        raise UserError(f"{run_dir}: not a complete run (needs {MODEL_FILE}, "
                                f"{TOKENIZER_DIR}/, {LABELS_FILE}, {CONFIG_FILE}, {METRICS_FILE}). "
                                "Fix: point --run_dir at the --output_dir of a finished "
                                "train.py run.")
    # Register our layers and the learning-rate schedule before deserializing.
    import slm_tf.models  # noqa: F401
    import slm_tf.train.optim  # noqa: F401
    # A quantization-aware model (compress.py --qat) holds tfmot wrappers and our
    # QuantizeConfigs; their scope is harmless for any other model.
    from slm_tf.compress.quantization import quantize_scope
    with quantize_scope():
        model = keras.models.load_model(os.path.join(run_dir, MODEL_FILE), compile=False)
    return Run(run_dir, model, load_tokenizer(os.path.join(run_dir, TOKENIZER_DIR)),
               read_json(os.path.join(run_dir, LABELS_FILE)),
               read_json(os.path.join(run_dir, CONFIG_FILE)))
