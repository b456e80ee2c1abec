"""Keras model -> TFLite flatbuffer: float, dynamic-range, float16, full-integer int8, or the
int8 a quantization-aware-trained model already carries (no calibration).

Only builtin TFLite ops are allowed by default: a plain LiteRT runtime on Android cannot run
Flex (``SELECT_TF_OPS``) ops, so a model needing them is refused with the ops named, unless the
caller opts in with ``allow_flex``.
"""
import re
from typing import Callable, Dict, Iterable, Optional

import numpy as np
import tensorflow as tf

from slm_tf.errors import UserError
from slm_tf.export.graph import has_recurrent_layers, serving_function
from slm_tf.models import INPUT_NAME
from slm_tf.registry import Registry
from slm_tf.trust.serving import ServingHead

QUANTIZATIONS: Registry[Callable] = Registry("TFLite quantization")
REPRESENTATIVE_EXAMPLES = 200


def is_quantization_aware(model) -> bool:
    """True for a model built by tfmot's ``quantize_apply`` (it carries fake-quant ranges)."""
    return any(type(layer).__name__.startswith(("QuantizeWrapper", "QuantizeLayer"))
               for layer in model.layers)


@QUANTIZATIONS.register("float")
def _float(converter, model, representative):
    pass


@QUANTIZATIONS.register("dynamic")
def _dynamic(converter, model, representative):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


@QUANTIZATIONS.register("fp16")
def _fp16(converter, model, representative):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


@QUANTIZATIONS.register("int8")
def _int8(converter, model, representative):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if is_quantization_aware(model):
        return  # QAT ranges are in the graph: no calibration
    if representative is None:
        raise UserError("int8 export needs representative ids to calibrate activation ranges "
                        "(a sample of the training split); pass representative_ids")
    converter.representative_dataset = lambda: ([row[np.newaxis]] for row in representative)
    # Full integer: every op int8, ids stay int32 and the outputs float32 for the app.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if has_recurrent_layers(model):  # unrolled by deployment_model
        # Every unrolled step's fully-connected op gets its own int32 bias (its input has its
        # own calibrated scale), with a scale and zero point per output channel: 12 B x 384
        # channels x 398 steps = 1.8 MB of a 128-unit BiGRU tagger's 5.6 MB file. Per-tensor
        # scales for fully-connected ops alone cut that to 5 KB (convolutions keep theirs).
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True


def _flex_ops(message: str):
    return sorted(set(re.findall(r"\btf\.(\w+)\(", message)) |
                  set(re.findall(r"Flex(\w+)", message)))


def to_tflite(model, quantization: str, seq_len: int,
              representative_ids: Optional[Iterable[np.ndarray]] = None,
              allow_flex: bool = False, head: ServingHead = ServingHead(),
              batch: Optional[int] = 1) -> bytes:
    """Converts ``model`` to a TFLite flatbuffer with the signature ``ids -> logits,
    probabilities`` on a ``[batch, seq_len]`` int32 input (``batch=None``: any batch, which a
    server resizes to each batch; phones use the static batch of 1).

    ``quantization`` is one of ``QUANTIZATIONS.names()``; ``int8`` calibrates on
    ``representative_ids`` (rows of token ids) unless the model is quantization-aware.
    """
    configure = QUANTIZATIONS.get(quantization)
    fn, net = serving_function(model, seq_len, batch=batch, head=head)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()],
                                                               net)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    rep = None
    if representative_ids is not None:
        rep = np.asarray(list(representative_ids), np.int32)[:REPRESENTATIVE_EXAMPLES]
    configure(converter, model, rep)
    if allow_flex:
        converter.target_spec.supported_ops = list(converter.target_spec.supported_ops) + [
            tf.lite.OpsSet.SELECT_TF_OPS]
    try:
        return converter.convert()
    except Exception as e:  # the converter raises ConverterError with the MLIR diagnostics
        ops = _flex_ops(str(e))
        if ops and not allow_flex:
            raise UserError(
                f"{model.name}: TFLite conversion ({quantization}) needs TensorFlow ops that "
                f"builtin TFLite lacks: {', '.join(ops)}. A plain LiteRT runtime on Android "
                "cannot run them. Fix: change the model to avoid these ops, or pass "
                "--allow_flex to bundle Flex ops (the app must then link the Flex delegate)."
            ) from None
        raise UserError(f"{model.name}: TFLite conversion ({quantization}) failed: "
                        f"{str(e).strip().splitlines()[-1][:500]}") from e


def size_breakdown(tflite_bytes: bytes) -> Dict[str, int]:
    """Where a flatbuffer's bytes go: constant buffers (weights, biases, metadata), the
    quantization parameters (a float32 scale and an int64 zero point per tensor or channel) and
    the rest (graph, tensor names, signatures). Explains why int8 is not exactly 4x smaller."""
    from tensorflow.lite.python import schema_py_generated as schema
    # The flat accessors read lengths in place; unpacking (ModelT) would copy every weight.
    model = schema.Model.GetRootAsModel(tflite_bytes, 0)
    buffers = sum(model.Buffers(i).DataLength() for i in range(model.BuffersLength()))
    quant = 0
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.TensorsLength()):
            q = graph.Tensors(i).Quantization()
            if q is not None:
                quant += 4 * q.ScaleLength() + 8 * q.ZeroPointLength()
    return {"buffer_bytes": buffers, "quantization_param_bytes": quant,
            "graph_bytes": len(tflite_bytes) - buffers - quant}


def signature_io(tflite_bytes: bytes):
    """Input/output names, dtypes and shapes of the default signature (for the bundle)."""
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=tflite_bytes)
    runner = interpreter.get_signature_runner()
    describe = lambda d: {name: {"dtype": np.dtype(v["dtype"]).name,
                                 "shape": [int(s) for s in v["shape"]]} for name, v in d.items()}
    return {"inputs": describe(runner.get_input_details()),
            "outputs": describe(runner.get_output_details()), "input_name": INPUT_NAME}
