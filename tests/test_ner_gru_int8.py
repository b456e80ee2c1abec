"""int8 TFLite of the cnn tagger's unrolled BiGRU: its fully-connected ops carry one scale per
tensor instead of one per output channel and step (the per-step biases were 1.8 MB of a
5.6 MB MSRA file)."""
import numpy as np
import pytest
import tensorflow as tf

import slm_tf  # noqa: F401
from ai_edge_litert.interpreter import Interpreter
from slm_tf.export.runtimes import open_runtime
from slm_tf.export.tflite import to_tflite
from slm_tf.models import ModelConfig, build_tagger

SEQ = 12


def _tagger():
    tf.keras.utils.set_random_seed(0)
    cfg = ModelConfig(model="cnn", kernel_sizes=["3"], num_filters=8, dilations=["1"],
                      bigram_buckets=50, hidden_dim=0, crf=True, embedding_dim=8, rnn_units=6)
    return build_tagger(cfg, 30, 5, SEQ)


def _ids(n, seed):
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, SEQ), np.int32)
    for i in range(n):
        k = int(rng.integers(2, SEQ + 1))
        ids[i, :k] = rng.integers(4, 30, k)
    return ids


@pytest.mark.integration  # one int8 conversion with calibration
def test_unrolled_gru_int8_has_one_scale_per_fully_connected_tensor(tmp_path):
    model = _tagger()
    data = to_tflite(model, "int8", SEQ, _ids(40, seed=1))
    ids = _ids(4, seed=0)
    want = model(ids, training=False).numpy()
    (tmp_path / "m.tflite").write_bytes(data)
    got = open_runtime(str(tmp_path / "m.tflite")).logits(ids)
    # int8 stays close to Keras (the same bound test_export.py holds every format to)
    assert np.abs(got - want).max() <= 0.25 * max(1.0, float(np.abs(want).max()))
    interp = Interpreter(model_content=data)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    fc, conv = [], []
    for op in interp._get_ops_details():
        weights = tensors[op["inputs"][1]] if len(op["inputs"]) > 1 else None
        if op["op_name"] == "FULLY_CONNECTED":
            fc.append(len(weights["quantization_parameters"]["scales"]))
        elif op["op_name"] == "CONV_2D":
            conv.append(len(weights["quantization_parameters"]["scales"]))
    # Unrolled: per direction and step an input and a recurrent product, all per tensor.
    assert len(fc) > 2 * SEQ and set(fc) == {1}, fc
    assert conv and min(conv) == 8, conv  # the convolutions keep a scale per filter
