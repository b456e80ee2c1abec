"""Token classifiers over the zoo encoders: shapes, save/load, learning, TFLite + LiteRT."""
import dataclasses
import os

import numpy as np
import pytest

import slm_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from slm_tf.export.runtimes import LiteRTRuntime
from slm_tf.export.tflite import to_tflite
from slm_tf.models import ModelConfig, build_tagger
from slm_tf.models.crf import viterbi_decode_np, viterbi_decode_tf
from slm_tf.ner.training import decode, tagger_loss, token_accuracy

V, K, L = 30, 5, 12
TINY = dict(embedding_dim=16, hidden_dim=16, num_layers=1, num_heads=2, ff_dim=16,
            num_filters=8, kernel_sizes=["3"], dropout=0.0)


def _cfg(model, crf=False):
    return ModelConfig(model=model, crf=crf, **TINY)


def _toy(n=256, seed=0):
    """Ids 5..29; tokens 5..9 are tag 1 ("B"), a token after one of those is tag 2 ("I")."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, V, size=(n, L)).astype(np.int32)
    ids[:, 0] = 2
    lengths = rng.integers(4, L, size=n)
    y = np.zeros((n, L), np.int32)
    for i, length in enumerate(lengths):
        ids[i, length:] = 0
        for t in range(1, length):
            if ids[i, t] < 10:
                y[i, t] = 1
            elif ids[i, t - 1] < 10 and t > 1:
                y[i, t] = 2
        y[i, 0] = -1
        y[i, length:] = -1
    return ids, y


@pytest.mark.parametrize("arch,crf", [("cnn", False), ("cnn", True), ("bilstm", True),
                                      ("bigru", False), ("transformer", False), ("bert", True)])
def test_shapes_and_save_load(arch, crf, tmp_path):
    model = build_tagger(_cfg(arch, crf), V, K, L)
    ids, _ = _toy(4)
    out = model(ids)
    assert out.shape == (4, L, K)
    assert (model.crf is not None) == crf
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(loaded(ids).numpy(), out.numpy(), atol=1e-5)
    if crf:
        for a, b in zip(loaded.crf.params(), model.crf.params()):
            np.testing.assert_array_equal(a, b)


def test_bow_has_no_token_states():
    with pytest.raises(slm_tf.errors.UserError, match="per-token"):
        build_tagger(_cfg("bow"), V, K, L)


@pytest.mark.integration
@pytest.mark.parametrize("crf", [False, True])
def test_tagger_learns_toy_rule(crf):
    ids, y = _toy()
    model = build_tagger(_cfg("bilstm", crf), V, 3, L)
    model.compile(keras.optimizers.Adam(0.02), loss=tagger_loss(model), metrics=[token_accuracy])
    model.fit(ids, y, epochs=12, batch_size=32, verbose=0)
    tags = decode(model, model.predict(ids, verbose=0), y >= 0)
    acc = (tags == y)[y >= 0].mean()
    assert acc > 0.97


@pytest.mark.integration
@pytest.mark.parametrize("arch,crf", [("bilstm", True), ("transformer", False), ("cnn", True)])
def test_tflite_builtin_ops_match_keras(arch, crf, tmp_path):
    ids, y = _toy(8)
    model = build_tagger(_cfg(arch, crf), V, K, L)
    if crf:  # non-zero transitions, so decoding depends on them
        rng = np.random.default_rng(1)
        model.crf.set_weights([rng.normal(size=w.shape).astype(np.float32)
                               for w in model.crf.get_weights()])
    path = os.path.join(tmp_path, "m.tflite")
    with open(path, "wb") as f:
        f.write(to_tflite(model, "float", L))
    runtime = LiteRTRuntime(path)
    lite = runtime.logits(ids)
    ref = model.predict(ids, verbose=0)
    np.testing.assert_allclose(lite, ref, atol=1e-4)
    np.testing.assert_array_equal(decode(model, lite, y >= 0), decode(model, ref, y >= 0))


@pytest.mark.integration
def test_in_graph_viterbi_converts_to_builtin_tflite(tmp_path):
    model = build_tagger(_cfg("cnn", True), V, K, L)
    rng = np.random.default_rng(2)
    model.crf.set_weights([rng.normal(size=w.shape).astype(np.float32)
                           for w in model.crf.get_weights()])
    trans, start, end = (tf.constant(w) for w in model.crf.params())

    @tf.function(input_signature=[tf.TensorSpec([1, L], tf.int32, name="ids")])
    def serve(ids):
        logits = model(ids, training=False)
        return {"tags": viterbi_decode_tf(logits, tf.not_equal(ids, 0), trans, start, end)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    path = os.path.join(tmp_path, "v.tflite")
    with open(path, "wb") as f:
        f.write(converter.convert())
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_path=path).get_signature_runner()
    ids, _ = _toy(6)
    logits = model.predict(ids, verbose=0)
    expected = viterbi_decode_np(logits, ids != 0, *model.crf.params())
    got = np.concatenate([runner(ids=row[None])["tags"] for row in ids])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.integration  # trains a step (traces the CRF loss)
def test_compiled_crf_model_saves_its_transitions(tmp_path):
    model = build_tagger(_cfg("cnn", True), V, K, L)
    model.compile("adam", loss=tagger_loss(model))
    ids, y = _toy(8)
    model.train_on_batch(ids, y)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    for a, b in zip(loaded.crf.params(), model.crf.params()):
        np.testing.assert_array_equal(a, b)
