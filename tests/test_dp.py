"""DP-SGD: per-example clipping against one-by-one GradientTape, the no-noise limit equals plain
SGD, and epsilon against dp_accounting called directly."""
import math

import dp_accounting
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from slm_tf.errors import UserError
from slm_tf.trust import dp


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(20, 8)(inp)
    h = keras.layers.GlobalAveragePooling1D()(h)
    h = keras.layers.Dense(16, activation="tanh")(h)
    return keras.Model(inp, keras.layers.Dense(3)(h))


def _batch(n=8, seed=1):
    r = np.random.RandomState(seed)
    return (tf.constant(r.randint(1, 20, (n, 6)), tf.int32),
            tf.constant(r.randint(0, 3, n), tf.int32))


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _one_by_one(model, x, y):
    out = []
    for i in range(x.shape[0]):
        with tf.GradientTape() as tape:
            loss = LOSS(y[i:i + 1], model(x[i:i + 1], training=True))
        out.append([tf.convert_to_tensor(g).numpy()
                    for g in tape.gradient(loss, model.trainable_variables)])
    return out


def test_per_example_gradients_are_clipped_to_the_bound():
    inner = _model()
    x, y = _batch()
    ref = _one_by_one(inner, x, y)
    norms = [math.sqrt(sum(float((g ** 2).sum()) for g in gs)) for gs in ref]
    clip = float(np.median(norms))  # half the examples above the bound, half below
    m = dp.DPSGDModel(inner, l2_clip=clip, noise_multiplier=0.0)
    m.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    clipped, _, got_norms = m.per_example_gradients(x, y)
    np.testing.assert_allclose(got_norms.numpy(), norms, rtol=1e-4)
    for i, gs in enumerate(ref):
        mine = [c[i].numpy() for c in clipped]
        norm = math.sqrt(sum(float((g ** 2).sum()) for g in mine))
        assert norm <= clip * (1 + 1e-4)
        scale = min(1.0, clip / norms[i])  # same direction, length min(norm, C)
        for a, b in zip(mine, gs):
            np.testing.assert_allclose(a, b * scale, rtol=1e-4, atol=1e-6)
    assert sum(n > clip * 1.001 for n in norms) >= 3  # the bound did bite


def test_no_noise_and_unbounded_clip_equals_plain_sgd_step():
    x, y = _batch(16, seed=2)
    plain = _model(3)
    plain.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSS)
    private = dp.DPSGDModel(_model(3), l2_clip=1e9, noise_multiplier=0.0)
    private.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSS)
    before = [v.numpy() for v in plain.trainable_variables]
    plain.train_on_batch(x, y)
    private.train_on_batch(x, y)
    for b, p, q in zip(before, plain.trainable_variables, private.inner.trainable_variables):
        assert not np.allclose(b, p.numpy())  # the step moved the weights
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-4, atol=1e-6)


def test_noise_has_the_configured_scale():
    # Zero gradients (a zero learning signal): the update is pure noise of std sigma*C/B.
    inner = _model()
    x, y = _batch(4)
    m = dp.DPSGDModel(inner, l2_clip=1e-12, noise_multiplier=2e11, seed=5)  # sigma*C = 0.2
    m.compile(optimizer=keras.optimizers.SGD(1.0), loss=LOSS)
    before = inner.trainable_variables[0].numpy()
    m.train_on_batch(x, y)
    step = before - inner.trainable_variables[0].numpy()
    assert abs(step.std() - 0.2 / 4) < 0.01


def test_epsilon_matches_dp_accounting_and_falls_with_noise():
    q, sigma, steps, delta = 64 / 10000, 1.1, 1560, 1e-4
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    acc = dp_accounting.rdp.RdpAccountant()
    acc.compose(event)
    assert dp.epsilon(sigma, q, steps, delta) == pytest.approx(acc.get_epsilon(delta), rel=1e-9)
    eps = [dp.epsilon(s, q, steps, delta) for s in (0.6, 0.8, 1.1, 2.0, 4.0)]
    assert all(a > b for a, b in zip(eps, eps[1:]))
    assert dp.epsilon(0.0, q, steps, delta) == math.inf
    rep = dp.privacy_report(dp.DPConfig(dp_l2_clip=1.0, dp_noise_multiplier=sigma), 10000, 64,
                            steps)
    assert rep["delta"] == 1e-4 and rep["epsilon"] == pytest.approx(acc.get_epsilon(delta))


def test_noise_without_a_clip_is_refused():
    with pytest.raises(UserError, match="--dp_l2_clip"):
        dp.wrap(_model(), dp.DPConfig(dp_noise_multiplier=1.0), seed=0)
    m = _model()
    assert dp.wrap(m, dp.DPConfig(), seed=0) is m


def test_sample_weights_scale_each_examples_loss_before_clipping():
    # Class weights arrive as sample weights: weight w multiplies that example's gradient.
    inner = _model()
    x, y = _batch(4)
    ref = _one_by_one(inner, x, y)
    m = dp.DPSGDModel(inner, l2_clip=1e9, noise_multiplier=0.0)
    m.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    w = tf.constant([0.5, 2.0, 1.0, 3.0])
    clipped, _, _ = m.per_example_gradients(x, y, w)
    for i, gs in enumerate(ref):
        for c, g in zip(clipped, gs):
            np.testing.assert_allclose(c[i].numpy(), g * float(w[i]), rtol=1e-4, atol=1e-6)
    m.fit(x, y, sample_weight=w.numpy(), epochs=1, batch_size=4, verbose=0)
