"""Magnitude pruning with ``tfmot.sparsity.keras``: per-layer targets, constant or polynomial
schedules, m:n structured sparsity, and the two layer adaptations tfmot needs for our zoo.

- ``Bidirectional`` is not in tfmot's prune registry (its LSTM/GRU cells are): during pruning
  it becomes :class:`PrunableBidirectional`, which names the four cell kernels.
- tfmot computes m:n masks for rank-2 and rank-4 kernels only, and a ``Conv1D`` kernel is
  rank 3. For m:n pruning a Conv1D runs as :class:`Conv1DAsConv2D` (a height-1 Conv2D, the
  op TFLite runs for a Conv1D anyway); its kernel is reshaped back when the model is rebuilt.

Layers without prunable weights (LayerNormalization, PositionEmbedding, pooling, masks) are
left as they are.
"""
import dataclasses
from typing import List, Optional, Tuple

import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from slm_tf.compress.config import (CompressConfig, Sparsity, match_override,
                                    parse_layer_sparsity, parse_m_by_n)
from slm_tf.compress.rebuild import Swap, clone_with
from slm_tf.errors import UserError

sparsity = tfmot.sparsity.keras
_RECURRENT_CELLS = (keras.layers.LSTMCell, keras.layers.GRUCell, keras.layers.SimpleRNNCell)
# Built-in layers with kernels that tfmot's prune registry handles.
_PRUNABLE_BUILTINS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D,
                      keras.layers.Embedding, keras.layers.LSTM, keras.layers.GRU,
                      keras.layers.SimpleRNN)


class PrunableBidirectional(keras.layers.Bidirectional, sparsity.PrunableLayer):
    """``Bidirectional`` that exposes the kernels of both cells to tfmot pruning."""

    def get_prunable_weights(self):
        return [w for direction in (self.forward_layer, self.backward_layer)
                for w in (direction.cell.kernel, direction.cell.recurrent_kernel)]


class Conv1DAsConv2D(keras.layers.Conv2D, sparsity.PrunableLayer):
    """A stride/dilation-1-D convolution computed as a height-1 Conv2D on ``[B, 1, L, C]``.

    Same outputs as the Conv1D it replaces, but a rank-4 kernel ``[1, k, C_in, C_out]``, the
    layout tfmot's m:n pruning (and TFLite's Conv2D) groups along ``C_in``.
    """

    @classmethod
    def from_conv1d(cls, layer: keras.layers.Conv1D) -> "Conv1DAsConv2D":
        c = layer.get_config()
        if c["padding"] == "causal" or c.get("groups", 1) != 1:
            raise UserError(f"{layer.name}: m:n pruning of a causal or grouped Conv1D is not "
                            "supported; exclude it with --layer_sparsity="
                            f"{layer.name}:0 (or give it an unstructured sparsity)")
        return cls(filters=c["filters"], kernel_size=(1, c["kernel_size"][0]),
                   strides=(1, c["strides"][0]), padding=c["padding"],
                   dilation_rate=(1, c["dilation_rate"][0]), activation=c["activation"],
                   use_bias=c["use_bias"], name=c["name"])

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        super().build(tf.TensorShape([shape[0], 1, shape[1], shape[2]]))
        self.input_spec = keras.layers.InputSpec(ndim=3)

    def call(self, inputs):
        # Conv2D.call would check its output against our 3-D compute_output_shape.
        outputs = self.convolution_op(tf.expand_dims(inputs, 1), self.kernel)
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        outputs = tf.squeeze(outputs, 1)
        return self.activation(outputs) if self.activation is not None else outputs

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        out = super().compute_output_shape(tf.TensorShape([shape[0], 1, shape[1], shape[2]]))
        return tf.TensorShape([out[0], out[2], out[3]])

    def get_prunable_weights(self):
        return [self.kernel]


@dataclasses.dataclass
class LayerTarget:
    """What pruning does to one layer: unstructured sparsity, or an m:n pattern."""
    layer: str
    kind: str
    sparsity: Optional[float] = None
    m_by_n: Optional[Tuple[int, int]] = None

    def describe(self) -> str:
        return f"{self.m_by_n[0]}:{self.m_by_n[1]}" if self.m_by_n else f"{self.sparsity:g}"


def _prunable(layer) -> bool:
    """True when tfmot can prune ``layer`` and it has weights worth pruning."""
    if isinstance(layer, keras.layers.Bidirectional):
        return isinstance(layer.forward_layer.cell, _RECURRENT_CELLS)
    if isinstance(layer, sparsity.PrunableLayer):
        return bool(layer.get_prunable_weights())
    # Exact types, as tfmot's registry matches them (a subclass is not in its registry).
    return type(layer) in _PRUNABLE_BUILTINS


def plan(model: keras.Model, cfg: CompressConfig) -> List[LayerTarget]:
    """The pruning target of every prunable layer (layers left dense are not listed).

    Default: m:n (``--structured``) for matmul kernels, ``--prune`` for embedding tables and
    for everything when no pattern is set; ``--layer_sparsity`` overrides per layer.
    """
    rules = parse_layer_sparsity(cfg.layer_sparsity)
    pattern = parse_m_by_n(cfg.structured) if cfg.structured else None
    targets = []
    for layer in model.layers:
        if not _prunable(layer):
            continue
        embedding = isinstance(layer, keras.layers.Embedding)
        value: Sparsity = cfg.prune if (embedding or pattern is None) else pattern
        override = match_override(layer.name, rules)
        if override is not None:
            value = override
        if value in (0, 0.0):
            continue
        kind = type(layer).__name__
        if isinstance(value, tuple):  # m zeros in every n: a fixed share m / n
            targets.append(LayerTarget(layer.name, kind, value[0] / value[1], value))
        else:
            targets.append(LayerTarget(layer.name, kind, float(value)))
    if not targets:
        raise UserError("pruning is on but no layer gets a non-zero target; check --prune, "
                        "--structured and --layer_sparsity")
    return targets


def schedule(cfg: CompressConfig, target: float, total_steps: int):
    """The tfmot pruning schedule reaching ``target`` within ``total_steps``.

    The polynomial schedule's last mask update must land exactly on its end step (tfmot
    prunes only at ``begin + k * frequency``), so the end step is rounded down to a multiple
    of the frequency.
    """
    end = max(1, int(round(cfg.prune_end * total_steps)))
    frequency = max(1, min(cfg.prune_frequency, end))
    if cfg.prune_schedule == "constant":
        return sparsity.ConstantSparsity(target, begin_step=0, frequency=frequency)
    end = max(frequency, end // frequency * frequency)
    return sparsity.PolynomialDecay(initial_sparsity=min(cfg.initial_sparsity, target),
                                    final_sparsity=target, begin_step=0, end_step=end,
                                    frequency=frequency)


def pruning_end_step(cfg: CompressConfig, total_steps: int) -> int:
    """The step after which every mask is final (0 for the constant schedule)."""
    if cfg.prune_schedule == "constant":
        return 0
    return int(schedule(cfg, 0.5, total_steps).end_step)


def prune(model: keras.Model, cfg: CompressConfig, total_steps: int) -> keras.Model:
    """``model`` with a ``PruneLowMagnitude`` wrapper on every layer :func:`plan` lists."""
    targets = {t.layer: t for t in plan(model, cfg)}

    def wrap(layer):
        target = targets.get(layer.name)
        if target is None:
            return layer
        use = layer
        if isinstance(layer, keras.layers.Bidirectional):
            use = PrunableBidirectional.from_config(layer.get_config())
        elif isinstance(layer, keras.layers.Conv1D) and target.m_by_n:
            use = Conv1DAsConv2D.from_conv1d(layer)
        wrapped = sparsity.prune_low_magnitude(
            use, pruning_schedule=schedule(cfg, target.sparsity, total_steps),
            sparsity_m_by_n=target.m_by_n)
        return wrapped if use is layer else Swap(wrapped, layer, use)
    return clone_with(model, wrap)


def strip(model: keras.Model) -> keras.Model:
    """Removes the pruning wrappers (the masked weights stay)."""
    return sparsity.strip_pruning(model)


def callbacks(log_dir: str) -> list:
    """tfmot's step counter (required while training) and its sparsity summaries."""
    return [sparsity.UpdatePruningStep(), sparsity.PruningSummaries(log_dir=log_dir)]
