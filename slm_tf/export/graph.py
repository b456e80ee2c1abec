"""The graph an exporter converts: fixed shape ``[batch, max_seq_len]``, named outputs.

Apps always pad to the tokenizer's ``max_seq_len``, so a static shape costs nothing and buys
builtin-only TFLite graphs: recurrent layers are unrolled over the known length (a GRU's
``while`` loop crashes full-integer calibration; an LSTM's needs a static batch).
"""
import tensorflow as tf
import tf_keras as keras

from slm_tf.models import INPUT_NAME
from slm_tf.trust.serving import ServingHead

OUTPUTS = ("logits", "probabilities")
_RECURRENT = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)


def _recurrent(layer) -> bool:
    inner = getattr(layer, "layer", None)  # Bidirectional and tfmot wrappers keep theirs here
    return isinstance(layer, _RECURRENT) or (inner is not None and _recurrent(inner))


def _unrolled(layer):
    config = layer.get_config()

    def unroll(cfg):
        if isinstance(cfg, dict):
            if "unroll" in cfg:
                cfg["unroll"] = True
            for v in cfg.values():
                unroll(v)
    unroll(config)
    return layer.__class__.from_config(config)


def has_recurrent_layers(model) -> bool:
    """True when the model holds an LSTM/GRU (possibly inside Bidirectional or a wrapper)."""
    return any(_recurrent(layer) for layer in model.layers)


def deployment_model(model, seq_len: int, batch: int = 1):
    """``model`` with a static ``[batch, seq_len]`` input and its recurrent layers unrolled.

    Models without recurrent layers are returned unchanged (the serving function fixes their
    shape). The clone shares no variables with ``model``; weights are copied.
    """
    if not has_recurrent_layers(model):
        return model
    from slm_tf.compress.quantization import quantize_scope  # a QAT model's wrappers
    ids = keras.Input(batch_shape=(batch, seq_len), dtype="int32", name=INPUT_NAME)
    with quantize_scope():
        clone = keras.models.clone_model(
            model, input_tensors=ids,
            clone_function=lambda l: _unrolled(l) if _recurrent(l) else l.__class__.from_config(
                l.get_config()))
    clone.set_weights(model.get_weights())
    return clone


def serving_function(model, seq_len: int, batch=1, head: ServingHead = ServingHead()):
    """A ``tf.function`` ``ids[batch, seq_len] int32 -> {logits, probabilities}`` with its
    input signature, and the Keras model it calls.

    ``batch=None`` keeps the batch dynamic (ONNX, SavedModel); TFLite uses 1. ``head`` folds
    the fitted temperature into the logits and adds ``oos_score``/``abstain`` when a run chose
    an abstention rule.
    """
    net = deployment_model(model, seq_len, batch) if batch else model

    @tf.function(input_signature=[tf.TensorSpec([batch, seq_len], tf.int32, name=INPUT_NAME)])
    def serve(ids):
        return head.outputs(net(ids, training=False))
    return serve, net
