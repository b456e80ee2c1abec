"""LoRA, BitFit and layer freezing on zoo models, in place, plus adapter files.

LoRA (Hu et al., 2021) adds ``(alpha / r) * x @ A @ B`` to a Dense layer's ``x @ W`` with ``A``
``[in, r]`` random and ``B`` ``[r, out]`` zero, so an adapted model starts equal to its base.
The adapted Dense layers stay the same objects (their class becomes :class:`LoRADense`), so
the functional graph, the attention layers holding the projections and the checkpoints all
keep working unchanged. Freezing moves variables out of a layer's trainable list (Keras 2 has
no per-variable switch); :func:`merge` folds ``A @ B`` into ``W`` and restores every layer
exactly as it was, so the merged model saves, exports and compresses like any zoo model.

Written here rather than taken from a library: the maintained LoRA implementations (PEFT,
keras-hub) are PyTorch or Keras 3, whose layers a tf_keras model cannot hold (DESIGN.md).
"""
import hashlib
import json
import math
import os
import re
from typing import Callable, Dict, List, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from slm_tf.errors import UserError
from slm_tf.io_utils import atomic_path
from slm_tf.models.base import OUTPUT_NAME
from slm_tf.models.layers import MultiHeadSelfAttention
from slm_tf.peft.config import LORA_TARGETS, FineTuneConfig

ADAPTER_FILE = "adapter.safetensors"
FORMAT = "slm_tf.peft/1"
# Layers that are new for the task and always train (classifier/tagger head, CRF scores).
HEAD_LAYERS = (OUTPUT_NAME, "crf")
# Encoder block layer names of bert ("layer3_...") and transformer/gpt ("block3_...").
_BLOCK = re.compile(r"^(?:layer|block)(\d+)_(.+)$")
_ATTENTION_ATTR = {"query": "query", "key": "key", "value": "value",
                   "attention_output": "output_dense"}
_FFN_SUFFIX = {"ffn_in": ("intermediate", "ffn_in"), "ffn_out": ("output", "ffn_out")}
_EMBEDDING_LAYERS = ("word_embeddings", "position_embeddings", "embeddings_norm",
                     "token_embedding", "position_embedding")


class LoRADense(keras.layers.Dense):
    """A Dense layer with a low-rank update; set up by :func:`add_lora`, never built directly."""

    def call(self, inputs, training=None):
        y = tf.tensordot(inputs, self.kernel, 1)
        x = inputs
        if self.lora_dropout and training:
            x = tf.nn.dropout(x, rate=self.lora_dropout)
        y += self.lora_scale * tf.tensordot(tf.tensordot(x, self.lora_a, 1), self.lora_b, 1)
        if self.use_bias:
            y = tf.nn.bias_add(y, self.bias)
        return self.activation(y) if self.activation is not None else y

    def delta(self) -> tf.Tensor:
        """The update ``(alpha / r) * A @ B`` that merging adds to the kernel."""
        return self.lora_scale * tf.matmul(self.lora_a, self.lora_b)


def add_lora(layer: keras.layers.Dense, rank: int, alpha: float, dropout: float,
             seed: int) -> LoRADense:
    """Turns the built Dense ``layer`` into a :class:`LoRADense` (same object, same kernel)."""
    fan_in, units = (int(d) for d in layer.kernel.shape)
    bound = 1.0 / math.sqrt(fan_in)  # PyTorch's kaiming_uniform(a=sqrt(5)), LoRA's choice
    layer.lora_a = layer.add_weight(
        "lora_a", shape=(fan_in, rank), trainable=True,
        initializer=keras.initializers.RandomUniform(-bound, bound, seed=seed))
    layer.lora_b = layer.add_weight("lora_b", shape=(rank, units), trainable=True,
                                    initializer="zeros")
    layer.lora_scale = alpha / rank
    layer.lora_dropout = dropout
    layer.lora_base_class = type(layer)
    layer.__class__ = LoRADense
    layer._init_call_fn_args()  # the new call() takes `training`
    return layer


def lora_layers(model: keras.Model, targets, from_block: int = 0
                ) -> List[Tuple[str, keras.layers.Dense]]:
    """``(path, Dense)`` of every projection in ``targets`` of encoder blocks >= from_block."""
    found = []
    for layer in model.layers:
        match = _BLOCK.match(layer.name)
        if not match or int(match.group(1)) < from_block:
            continue
        if isinstance(layer, MultiHeadSelfAttention):
            found += [(f"{layer.name}/{_ATTENTION_ATTR[t]}", getattr(layer, _ATTENTION_ATTR[t]))
                      for t in targets if t in _ATTENTION_ATTR]
        elif isinstance(layer, keras.layers.Dense):
            if any(match.group(2) in _FFN_SUFFIX[t] for t in targets if t in _FFN_SUFFIX):
                found.append((layer.name, layer))
    return found


def _frozen_block(layer_name: str, n: int) -> bool:
    match = _BLOCK.match(layer_name)
    return n > 0 and (layer_name in _EMBEDDING_LAYERS or
                      (match is not None and int(match.group(1)) < n))


def _is_bias(var) -> bool:
    # Dense/Conv biases and LayerNorm shifts (BitFit trains both).
    return var.name.split("/")[-1].split(":")[0] in ("bias", "beta")


def _set_trainable(model: keras.Model, keep: Callable[[str, tf.Variable], bool],
                   added) -> None:
    """Moves every variable ``keep(top_layer_name, var)`` rejects to its layer's
    non-trainable list, remembering the lists without the ``added`` ids for :func:`merge`."""
    for top in model.layers:
        for layer in top._flatten_layers(include_self=True, recursive=True):
            if hasattr(layer, "_peft_original"):
                continue
            trainable, fixed = list(layer._trainable_weights), list(layer._non_trainable_weights)
            moved = [v for v in trainable if not keep(top.name, v)]
            _set_lists(layer, [v for v in trainable if keep(top.name, v)], moved + fixed)
            # object.__setattr__: Keras would track (and re-add) variables held by a new attribute.
            object.__setattr__(layer, "_peft_original", (
                [v for v in trainable if id(v) not in added], fixed))


def _set_lists(layer, trainable, fixed) -> None:
    # Keras' __setattr__ appends every variable it sees in a new attribute value to the
    # trainable list again; plain object attributes keep the lists exactly as given.
    object.__setattr__(layer, "_trainable_weights", list(trainable))
    object.__setattr__(layer, "_non_trainable_weights", list(fixed))


def apply(model: keras.Model, cfg: FineTuneConfig, seed: int = 0) -> List[str]:
    """Adapts ``model`` in place as ``cfg`` says; returns the LoRA paths. Call before compile."""
    adapted = lora_layers(model, cfg.lora_targets, cfg.freeze_layers) if cfg.lora_rank else []
    if cfg.lora_rank and not adapted:
        raise UserError(f"--lora_targets={','.join(cfg.lora_targets)} matched no layer of "
                        f"{model.name}. Fix: use a bert or transformer model (LoRA adapts their "
                        f"{', '.join(LORA_TARGETS)} projections).")
    lora_vars = set()
    for i, (_, layer) in enumerate(adapted):
        add_lora(layer, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, seed + i)
        lora_vars |= {id(layer.lora_a), id(layer.lora_b)}

    def keep(top_name: str, var) -> bool:
        if id(var) in lora_vars or top_name in HEAD_LAYERS:
            return True
        if _frozen_block(top_name, cfg.freeze_layers):
            return False
        if cfg.lora_rank or cfg.bitfit:
            return cfg.bitfit and _is_bias(var)
        return True  # freeze_layers alone: the later blocks train in full

    _set_trainable(model, keep, lora_vars)
    return [path for path, _ in adapted]


def merge(model: keras.Model) -> int:
    """Folds every LoRA update into its kernel and restores the model's layers and weight lists
    as they were before :func:`apply` (everything trainable again); returns how many merged."""
    merged = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, LoRADense):
            layer.kernel.assign_add(layer.delta())
            layer.__class__ = layer.lora_base_class
            for name in ("lora_a", "lora_b", "lora_scale", "lora_dropout", "lora_base_class"):
                object.__delattr__(layer, name)
            layer._init_call_fn_args()
            merged += 1
        if hasattr(layer, "_peft_original"):
            _set_lists(layer, *layer._peft_original)
            object.__delattr__(layer, "_peft_original")
    return merged


def parameter_report(model: keras.Model) -> Dict:
    """Trainable and total parameters (adapters included) and the trainable share."""
    trainable = int(sum(v.shape.num_elements() for v in model.trainable_weights))
    total = int(sum(v.shape.num_elements() for v in model.weights))
    return {"trainable_params": trainable, "total_params": total,
            "trainable_share": trainable / total if total else 0.0}


def variable_paths(model: keras.Model) -> Dict[int, str]:
    """id(variable) -> a path unique in the model, e.g. ``block0_attention/query/lora_a``
    (Keras names the four projections' kernels of one attention layer alike)."""
    paths = {}
    for top in model.layers:
        for layer in top._flatten_layers(include_self=True, recursive=True):
            prefix = top.name if layer is top else f"{top.name}/{layer.name}"
            for var in layer._trainable_weights + layer._non_trainable_weights:
                paths.setdefault(id(var), f"{prefix}/{var.name.split('/')[-1].split(':')[0]}")
    return paths


def _named(model: keras.Model, variables) -> Dict[str, tf.Variable]:
    paths = variable_paths(model)
    named = {paths[id(v)]: v for v in variables}
    if len(named) != len(variables):
        raise ValueError("two variables share a path; an adapter would lose one")
    return named


def base_fingerprint(model: keras.Model) -> str:
    """sha256 of the frozen weights (paths, shapes, values): what an adapter was trained on."""
    digest = hashlib.sha256()
    for path, var in sorted(_named(model, model.non_trainable_weights).items()):
        value = np.ascontiguousarray(var.numpy())
        digest.update(f"{path}{value.shape}{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def save_adapter(model: keras.Model, cfg: FineTuneConfig, path: str) -> int:
    """Writes the trainable weights alone (adapters, head, biases) with the PEFT config and the
    base's fingerprint to ``path`` (safetensors: plain tensors, nothing executable); returns
    the file's size in bytes."""
    from safetensors.numpy import save_file
    tensors = {path: np.ascontiguousarray(var.numpy())
               for path, var in _named(model, model.trainable_weights).items()}
    metadata = {"format": FORMAT, "config": json.dumps(cfg.__dict__),
                "base_sha256": base_fingerprint(model), "base_model": model.name}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return os.path.getsize(path)


def read_adapter(path: str) -> Tuple[FineTuneConfig, Dict[str, str], Dict[str, np.ndarray]]:
    """``(config, metadata, tensors)`` of an adapter file; a clear error if it is not one."""
    from safetensors import safe_open
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, ValueError, Exception) as e:  # safetensors raises its own error types
        raise UserError(f"{path}: not a readable adapter file ({e}). Fix: pass the "
                        f"{ADAPTER_FILE} a LoRA/BitFit run wrote.") from None
    if metadata.get("format") != FORMAT:
        raise UserError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}. Fix: "
                        f"pass the {ADAPTER_FILE} a LoRA/BitFit run wrote.")
    return FineTuneConfig(**json.loads(metadata["config"])), metadata, tensors


def load_adapter(model: keras.Model, path: str, seed: int = 0) -> FineTuneConfig:
    """Adapts the freshly built base ``model`` as the adapter's config says and loads its
    weights; refuses a base whose frozen weights differ from the one it was trained on."""
    cfg, metadata, tensors = read_adapter(path)
    apply(model, cfg, seed)
    found = base_fingerprint(model)
    if found != metadata["base_sha256"]:
        merge(model)  # leave the model as it was
        raise UserError(f"{path} was trained on a different base model (its frozen weights hash "
                        f"to {metadata['base_sha256'][:12]}..., this {model.name} model's to "
                        f"{found[:12]}...). Fix: load it onto the model it was trained from "
                        "(same architecture, vocabulary and --init_checkpoint / --init_from).")
    by_name = _named(model, model.trainable_weights)
    if set(by_name) != set(tensors):
        merge(model)
        raise UserError(f"{path} holds tensors {sorted(set(tensors) - set(by_name))[:3]} and "
                        f"lacks {sorted(set(by_name) - set(tensors))[:3]} of this model. Fix: "
                        "load it onto the model it was trained from.")
    for name, var in by_name.items():
        var.assign(tensors[name])
    return cfg


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (MB): an upper bound of training's."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

