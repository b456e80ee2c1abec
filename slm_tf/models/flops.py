"""Analytic FLOPs per example (2 x multiply-adds of matmuls/convolutions/recurrences).

Counted per layer type from the layer's weights and the sequence length; element-wise ops,
softmax and normalization are left out (they are a few percent for these models).
"""
from typing import Callable, Dict

import tf_keras as keras

from slm_tf.models.layers import MultiHeadSelfAttention
from slm_tf.registry import Registry

FLOP_COUNTERS: Registry[Callable] = Registry("flop counter")


def _positions(layer, seq_len: int) -> int:
    """How many times a per-position layer is applied to one example."""
    shape = layer.output_shape
    if isinstance(shape, list):
        shape = shape[0]
    n = 1
    for d in shape[1:-1]:
        n *= seq_len if d is None else int(d)
    return n


@FLOP_COUNTERS.register("Dense")
def _dense(layer, seq_len):
    fan_in, units = layer.kernel.shape
    return 2 * int(fan_in) * int(units) * _positions(layer, seq_len)


@FLOP_COUNTERS.register("Conv1D")
def _conv1d(layer, seq_len):
    k, cin, cout = layer.kernel.shape
    return 2 * int(k) * int(cin) * int(cout) * _positions(layer, seq_len)


@FLOP_COUNTERS.register("MultiHeadSelfAttention")
def _attention(layer: MultiHeadSelfAttention, seq_len):
    width = int(layer.query.kernel.shape[-1])
    projections = 4 * 2 * seq_len * width * width
    return projections + 2 * 2 * seq_len * seq_len * width


def _recurrent(layer, seq_len, gates):
    cell = layer.cell
    fan_in = int(cell.kernel.shape[0])
    return 2 * gates * (fan_in + cell.units) * cell.units * seq_len


FLOP_COUNTERS.register("LSTM")(lambda layer, seq_len: _recurrent(layer, seq_len, 4))
FLOP_COUNTERS.register("GRU")(lambda layer, seq_len: _recurrent(layer, seq_len, 3))


@FLOP_COUNTERS.register("Bidirectional")
def _bidirectional(layer, seq_len):
    return (count_layer(layer.forward_layer, seq_len)
            + count_layer(layer.backward_layer, seq_len))


def count_layer(layer, seq_len: int) -> int:
    """FLOPs of one layer (0 for layers without a registered counter)."""
    name = type(layer).__name__
    return FLOP_COUNTERS.get(name)(layer, seq_len) if name in FLOP_COUNTERS else 0


def flops_per_example(model: keras.Model, seq_len: int) -> int:
    """FLOPs for one example of ``seq_len`` tokens."""
    return sum(count_layer(layer, seq_len) for layer in model.layers)


def param_counts(model: keras.Model) -> Dict[str, int]:
    """Total, embedding (token and position tables) and non-embedding parameter counts."""
    total = int(sum(w.shape.num_elements() for w in model.weights))
    emb = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Embedding) or type(layer).__name__ in (
                "PositionEmbedding", "TiedEmbedding"):
            emb += int(sum(w.shape.num_elements() for w in layer.weights))
    return {"num_params": total, "num_embedding_params": emb,
            "num_non_embedding_params": total - emb}
