"""Keras model -> ONNX with tf2onnx: input ``ids [batch, seq_len] int32``, outputs ``logits``
and ``probabilities``, dynamic batch."""
import numpy as np
import tensorflow as tf

from slm_tf.errors import UserError
from slm_tf.export.graph import serving_function
from slm_tf.trust.serving import ServingHead
from slm_tf.models import INPUT_NAME

OPSET = 17


def _erfc_as_one_minus_erf(ctx, node, name, args):
    # TF lowers exact GELU to erfc; ONNX has Erf but no Erfc, and erfc(x) = 1 - erf(x).
    from tf2onnx import utils
    node.type = "Erf"
    one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1.0, np.float32))
    sub = ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(f"{name}_1m"))
    ctx.replace_inputs(sub, [one.output[0], node.output[0]])


CUSTOM_OP_HANDLERS = {"Erfc": (_erfc_as_one_minus_erf, [])}


def _sum_repeated_scatter_indices(proto) -> None:
    """tf2onnx writes TF's ``scatter_nd`` (updates summed where an index repeats; the tfidf
    model counts n-grams this way) as ScatterND into zeros with no reduction, which keeps one
    update per index. ScatterND into zeros (ConstantOfShape) gets ``reduction="add"`` (opset
    16+), the same result for distinct indices and TF's for repeated ones."""
    from onnx import helper
    zeros = {out for n in proto.graph.node if n.op_type == "ConstantOfShape" for out in n.output}
    for node in proto.graph.node:
        if node.op_type == "ScatterND" and node.input[0] in zeros and not any(
                a.name == "reduction" for a in node.attribute):
            node.attribute.append(helper.make_attribute("reduction", "add"))


def to_onnx(model, seq_len: int, head: ServingHead = ServingHead()) -> bytes:
    """Serialized ONNX model (opset 17) of ``model`` with the explicit input signature
    tf2onnx needs."""
    import tf2onnx
    fn, _ = serving_function(model, seq_len, batch=None, head=head)
    spec = [tf.TensorSpec([None, seq_len], tf.int32, name=INPUT_NAME)]
    try:
        proto, _ = tf2onnx.convert.from_function(
            fn, input_signature=spec, opset=OPSET,
            custom_op_handlers=CUSTOM_OP_HANDLERS)
    except Exception as e:
        raise UserError(f"{model.name}: ONNX conversion failed: {str(e).strip()[-500:]}") from e
    _sum_repeated_scatter_indices(proto)
    return proto.SerializeToString()
