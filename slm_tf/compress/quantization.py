"""Quantization-aware training with ``tfmot.quantization.keras`` for every zoo layer.

tfmot's default 8-bit registry quantizes Dense, Add, Concatenate, Dropout and activations.
Everything else our models use gets a :class:`WeightsQuantizeConfig` from
:data:`QUANTIZE_CONFIGS` (by layer class): the four projection kernels of our attention,
Conv1D and Embedding kernels, the position table, both cells of a Bidirectional LSTM/GRU,
the outputs of LayerNormalization and pooling, and a no-op for the padding mask.

Three tfmot behaviours are worked around here:

- Its layout transform puts a fake-quant op after every model input; our input is int32 token
  ids, which FakeQuant rejects. :class:`TokenIdsScheme` skips integer inputs.
- ``QuantizeWrapperV2`` tracks a weight twice when the wrapped layer was built before
  wrapping (always so after ``quantize_apply``), so a saved ``.keras`` file holds more
  variables than a freshly built wrapper expects and reloading fails. Our
  :class:`QuantizeWrapperV2` (same class name, so saved files stay interchangeable) tracks each
  weight once, and :func:`quantize` normalizes the wrappers ``quantize_apply`` made.
- The collaborative schemes (prune- and cluster-preserving QAT) only cover Dense/Conv2D in
  tfmot. Our configs preserve zeros and clusters themselves (:class:`PreservingWeightQuantizer`).

Load a QAT model inside :func:`quantize_scope` (``load_run`` does).
"""
import contextlib
from typing import Callable, Tuple

import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot
# tfmot 0.8.1 exports the prune-preserving scheme but not the cluster-preserving one.
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve \
    .default_8bit_cluster_preserve_quantize_scheme import Default8BitClusterPreserveQuantizeScheme

from slm_tf.compress.rebuild import clone_with
from slm_tf.errors import UserError
from slm_tf.models.layers import MultiHeadSelfAttention, serializable
from slm_tf.registry import Registry

Q = tfmot.quantization.keras
PRESERVE = ("none", "sparsity", "clusters", "sparse_clusters")


def _resolve(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _assign(obj, path: str, value) -> None:
    *parents, last = path.split(".")
    setattr(_resolve(obj, ".".join(parents)) if parents else obj, last, value)


def preserving_identity(weights: tf.Tensor, keep_zeros: bool, tie_clusters: bool) -> tf.Tensor:
    """Identity whose gradient keeps zero weights at zero and/or moves the weights sharing a
    value together (their mean gradient).

    With a fresh Adam-type optimizer a weight that only ever receives zero gradient never
    moves (decoupled weight decay of 0 is 0), and weights that start equal and receive equal
    gradients stay equal, so sparsity and clusters survive fine-tuning exactly.
    """
    @tf.custom_gradient
    def identity(x):
        def grad(g):
            if tie_clusters:
                values, index = tf.unique(tf.reshape(x, [-1]))
                mean = tf.math.unsorted_segment_mean(tf.reshape(g, [-1]), index,
                                                     tf.size(values))
                g = tf.reshape(tf.gather(mean, index), tf.shape(g))
            if keep_zeros:
                g = g * tf.cast(tf.not_equal(x, 0), g.dtype)
            return g
        return tf.identity(x), grad
    return identity(weights)


class PreservingWeightQuantizer(Q.quantizers.LastValueQuantizer):
    """tfmot's 8-bit weight quantizer (symmetric, per tensor, narrow range) that can also
    preserve sparsity and/or clusters (see :func:`preserving_identity`)."""

    def __init__(self, preserve: str = "none"):
        super().__init__(num_bits=8, per_axis=False, symmetric=True, narrow_range=True)
        if preserve not in PRESERVE:
            raise ValueError(f"preserve must be one of {PRESERVE}")
        self.preserve = preserve

    def __call__(self, inputs, training, weights, **kwargs):
        if self.preserve != "none":
            inputs = preserving_identity(inputs, "spars" in self.preserve,
                                         "clusters" in self.preserve)
        return super().__call__(inputs, training, weights, **kwargs)

    def get_config(self):
        return {"preserve": self.preserve}

    def __eq__(self, other):
        return isinstance(other, PreservingWeightQuantizer) and super().__eq__(other) \
            and self.preserve == other.preserve


@serializable
class WeightsQuantizeConfig(Q.QuantizeConfig):
    """Fake-quantizes the weights at ``weight_paths`` (attribute paths such as
    ``"query.kernel"`` or ``"forward_layer.cell.kernel"``) and, optionally, the layer output.
    No paths and no output: the layer runs as is (a no-op config)."""

    def __init__(self, weight_paths=(), quantize_output: bool = False, preserve: str = "none"):
        self.weight_paths = list(weight_paths)
        self.quantize_output = bool(quantize_output)
        self.preserve = preserve

    def get_weights_and_quantizers(self, layer):
        return [(_resolve(layer, p), PreservingWeightQuantizer(self.preserve))
                for p in self.weight_paths]

    def set_quantize_weights(self, layer, quantize_weights):
        for path, value in zip(self.weight_paths, quantize_weights):
            _assign(layer, path, value)

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        if not self.quantize_output:
            return []
        return [Q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False,
                                                    symmetric=False, narrow_range=False)]

    def get_config(self):
        return {"weight_paths": self.weight_paths, "quantize_output": self.quantize_output,
                "preserve": self.preserve}


# Layer class name -> (layer, preserve) -> QuantizeConfig, for layers tfmot's registry lacks.
QUANTIZE_CONFIGS: Registry[Callable] = Registry("quantize config")


def _config(paths=(), output=False):
    return lambda layer, preserve: WeightsQuantizeConfig(
        paths(layer) if callable(paths) else paths, output, preserve)


QUANTIZE_CONFIGS.register("MultiHeadSelfAttention")(_config(
    [f"{p}.kernel" for p in MultiHeadSelfAttention.PROJECTIONS], output=True))
QUANTIZE_CONFIGS.register("Conv1D")(_config(["kernel"], output=True))
# A lookup returns table rows, already on the table's int8 grid: no output quantizer.
QUANTIZE_CONFIGS.register("Embedding")(_config(["embeddings"]))
QUANTIZE_CONFIGS.register("PositionEmbedding")(_config(["embeddings"]))
# An LM's tied table: int8 rows in, and the same int8 matrix for the output logits. The layer
# is called twice (lookup, then logits); one output range could not serve both, so the
# logits stay float (the last op: the runtime dequantizes there anyway).
QUANTIZE_CONFIGS.register("TiedEmbedding")(_config(["embeddings"]))
# TFLite has no int8 LayerNorm; quantizing its output lets the next matmul run in int8.
QUANTIZE_CONFIGS.register("LayerNormalization")(_config(output=True))
QUANTIZE_CONFIGS.register("MaskedPooling")(_config(output=True))
QUANTIZE_CONFIGS.register("PaddingMask")(_config())
# Taggers: masks, integer bigram ids, a reordering and the CRF (an identity holding the
# transition scores, which stay float for the decoding step) need no quantizer of their own.
for _name in ("ZeroPadding", "HashedBigrams", "ReverseByLength", "CRF"):
    QUANTIZE_CONFIGS.register(_name)(_config())
# tfidf: integer n-gram ids need none; its features and the inverse norm get output ranges so
# the scoring matmul and the scaling run in int8.
QUANTIZE_CONFIGS.register("HashedNgrams")(_config())
QUANTIZE_CONFIGS.register("TfIdfFeatures")(_config(["idf"], output=True))
QUANTIZE_CONFIGS.register("InverseNorm")(_config(output=True))
QUANTIZE_CONFIGS.register("Multiply")(_config(output=True))
QUANTIZE_CONFIGS.register("Bias")(_config())  # the logits: the runtime dequantizes there
# A lone GRU/LSTM (the cnn tagger's two directions): both cell kernels and the output.
for _name in ("GRU", "LSTM"):
    QUANTIZE_CONFIGS.register(_name)(_config(["cell.kernel", "cell.recurrent_kernel"],
                                             output=True))


@QUANTIZE_CONFIGS.register("Bidirectional")
def _bidirectional(layer, preserve):
    cell = layer.forward_layer.cell
    if not isinstance(cell, (keras.layers.LSTMCell, keras.layers.GRUCell,
                             keras.layers.SimpleRNNCell)):
        raise UserError(f"{layer.name}: QAT supports Bidirectional LSTM/GRU/SimpleRNN, not a "
                        f"{type(cell).__name__}")
    paths = [f"{d}.cell.{w}" for d in ("forward_layer", "backward_layer")
             for w in ("kernel", "recurrent_kernel")]
    return WeightsQuantizeConfig(paths, True, preserve)


# Scheme name -> (tfmot scheme for registry layers, what our own configs preserve).
SCHEMES: Registry[Tuple[Callable, str]] = Registry("QAT scheme")
SCHEMES.register("default")((Q.default_8bit.Default8BitQuantizeScheme, "none"))
SCHEMES.register("prune_preserve")(
    (Q.collab_opts.Default8BitPrunePreserveQuantizeScheme, "sparsity"))
SCHEMES.register("cluster_preserve")(
    (lambda: Default8BitClusterPreserveQuantizeScheme(False), "clusters"))
SCHEMES.register("sparse_cluster_preserve")(
    (lambda: Default8BitClusterPreserveQuantizeScheme(True), "sparse_clusters"))


class _SkipIntegerInputs(Q.QuantizeLayoutTransform):
    def __init__(self, base):
        self.base = base

    def apply(self, model, layer_quantize_map):
        integer = {n for n in model.input_names
                   if tf.as_dtype(model.get_layer(n).dtype).is_integer}
        return self.base.apply(model, {k: v for k, v in layer_quantize_map.items()
                                       if k not in integer})


class TokenIdsScheme(Q.QuantizeScheme):
    """A tfmot scheme that never fake-quantizes integer model inputs (token ids)."""

    def __init__(self, base):
        self.base = base

    def get_layout_transformer(self):
        return _SkipIntegerInputs(self.base.get_layout_transformer())

    def get_quantize_registry(self):
        return self.base.get_quantize_registry()


def _track_each_weight_once(wrapper) -> None:
    # What a wrapper built from scratch tracks itself: the weights it quantizes (the wrapped
    # layer tracks the rest).
    wrapper._trainable_weights = [w for w, _, _ in wrapper._weight_vars]


class QuantizeWrapperV2(Q.QuantizeWrapperV2):
    """tfmot's QuantizeWrapperV2, tracking each weight once so ``.keras`` files reload."""

    def build(self, input_shape):
        super().build(input_shape)
        _track_each_weight_once(self)


@contextlib.contextmanager
def quantize_scope():
    """tfmot's ``quantize_scope`` plus our wrapper and configs: load, clone or convert a QAT
    model inside it."""
    with Q.quantize_scope(), keras.utils.custom_object_scope(
            {"QuantizeWrapperV2": QuantizeWrapperV2,
             "WeightsQuantizeConfig": WeightsQuantizeConfig}):
        yield


def quantize_config_for(layer, preserve: str, registry):
    """The QuantizeConfig for ``layer`` (None: tfmot's registry handles it)."""
    name = type(layer).__name__
    if name in QUANTIZE_CONFIGS:
        return QUANTIZE_CONFIGS.get(name)(layer, preserve)
    if registry.supports(layer):
        return None
    raise UserError(f"layer {layer.name} ({name}) cannot be quantized: neither tfmot's 8-bit "
                    "registry nor slm_tf.compress.quantization.QUANTIZE_CONFIGS covers it. "
                    "Fix: register a QuantizeConfig factory for it in QUANTIZE_CONFIGS.")


def quantize(model: keras.Model, scheme: str = "default") -> keras.Model:
    """A quantization-aware copy of ``model`` (weights copied) under ``SCHEMES[scheme]``."""
    make_scheme, preserve = SCHEMES.get(scheme)
    base = make_scheme()
    registry = base.get_quantize_registry()

    def annotate(layer):
        return Q.quantize_annotate_layer(layer, quantize_config_for(layer, preserve, registry))
    annotated = clone_with(model, annotate)
    with quantize_scope():
        quantized = Q.quantize_apply(annotated, TokenIdsScheme(base))
    for layer in quantized.layers:
        if isinstance(layer, Q.QuantizeWrapperV2):
            _track_each_weight_once(layer)
    return quantized


_OUTPUT_RANGES = ("output", "post_activation")


def calibrate(quantized: keras.Model, float_model: keras.Model, ids, batch_size: int = 256
              ) -> int:
    """Starts every output range of ``quantized`` at the range ``float_model``'s matching
    layer produces on ``ids`` (0 included, as tfmot requires); returns how many were set.

    tfmot starts each activation range at [-6, 6] and moves it by a 0.999 moving average, so
    for the first thousands of fine-tuning steps larger values (logits) are clipped and small
    ones get a needlessly coarse grid.
    """
    targets = {}
    for layer in quantized.layers:
        if not isinstance(layer, Q.QuantizeWrapper):
            continue
        ranges = [v for v in layer.non_trainable_weights
                  if v.name.split("/")[-1].split(":")[0].rsplit("_", 1)[0] in _OUTPUT_RANGES]
        if ranges:
            targets[layer.layer.name] = ranges
    names = [n for n in targets if n in {l.name for l in float_model.layers}]
    if not names:
        return 0
    probe = keras.Model(float_model.inputs, [float_model.get_layer(n).output for n in names])
    low, high = {n: 0.0 for n in names}, {n: 0.0 for n in names}
    for start in range(0, len(ids), batch_size):
        outputs = probe(ids[start:start + batch_size], training=False)
        for name, out in zip(names, outputs if len(names) > 1 else [outputs]):
            low[name] = min(low[name], float(tf.reduce_min(out)))
            high[name] = max(high[name], float(tf.reduce_max(out)))
    for name in names:
        for var in targets[name]:
            var.assign(low[name] if var.name.split(":")[0].endswith("_min") else high[name])
    return len(names)


def is_quantized(model: keras.Model) -> bool:
    """True for a model made by :func:`quantize` (or loaded from one)."""
    return any(isinstance(layer, Q.QuantizeWrapper) for layer in model.layers)


def float_layer(layer):
    """The layer a QAT wrapper wraps (the layer itself otherwise)."""
    return layer.layer if isinstance(layer, Q.QuantizeWrapper) else layer

