"""Differential privacy: DP-SGD training (per-example clipping + Gaussian noise) and its (ε, δ).

The accountant is dp-accounting's (Google's maintained library). We do not use
tensorflow-privacy's DP optimizers: 0.9.0 pins numpy 1.x and an older dp-accounting, and does
not import under TF 2.21 without a workaround (see DESIGN.md); the mechanism itself is a few
lines, written here as a ``train_step``.
"""
import math
from typing import Dict

import dp_accounting
import tensorflow as tf
import tf_keras as keras

from slm_tf.trust.config import DPConfig, check  # noqa: F401  (re-exported)


class DPSGDModel(keras.Model):
    """Trains ``inner`` with DP-SGD: every example's gradient is clipped to L2 norm ``l2_clip``,
    the clipped gradients are summed, N(0, (noise_multiplier * l2_clip)^2) noise is added to
    each coordinate, and the sum is divided by the batch size before the optimizer sees it.

    Compile it like ``inner`` (optimizer, loss, metrics); predictions and saved weights are
    ``inner``'s. Per-example gradients come from ``tf.vectorized_map`` (falls back to a loop
    for ops it cannot vectorize).
    """

    def __init__(self, inner: keras.Model, l2_clip: float, noise_multiplier: float,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner
        self.l2_clip = float(l2_clip)
        self.noise_multiplier = float(noise_multiplier)
        self._noise = tf.random.Generator.from_seed(seed)

    def call(self, inputs, training=None):
        return self.inner(inputs, training=training)

    def per_example_gradients(self, x, y, sample_weight=None):
        """Clipped per-example gradients (stacked on axis 0), predictions and unclipped norms;
        ``sample_weight`` (e.g. class weights) scales each example's loss before clipping."""
        variables = self.inner.trainable_variables
        loss_fn = self.loss if callable(self.loss) else keras.losses.get(self.loss)
        if sample_weight is None:
            sample_weight = tf.ones(tf.shape(x)[:1])

        def one(example):
            xi, yi, wi = example
            with tf.GradientTape() as tape:
                pred = self.inner(xi[None], training=True)
                loss = loss_fn(yi[None], pred, sample_weight=wi[None])
            grads = [tf.convert_to_tensor(g) if g is not None else tf.zeros_like(v)
                     for g, v in zip(tape.gradient(loss, variables), variables)]
            norm = tf.linalg.global_norm(grads)
            scale = tf.minimum(1.0, self.l2_clip / tf.maximum(norm, 1e-12))
            return [g * scale for g in grads], pred[0], norm

        return tf.vectorized_map(one, (x, y, tf.cast(sample_weight, tf.float32)),
                                 fallback_to_while_loop=True)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        clipped, pred, _ = self.per_example_gradients(x, y, sample_weight)
        batch = tf.cast(tf.shape(x)[0], tf.float32)
        std = self.noise_multiplier * self.l2_clip
        grads = [(tf.reduce_sum(g, axis=0) + self._noise.normal(tf.shape(g)[1:], stddev=std))
                 / batch for g in clipped]
        self.optimizer.apply_gradients(zip(grads, self.inner.trainable_variables))
        self.compiled_loss(y, pred, sample_weight)
        self.compiled_metrics.update_state(y, pred, sample_weight)
        return {m.name: m.result() for m in self.metrics}


def epsilon(noise_multiplier: float, sampling_rate: float, steps: int, delta: float) -> float:
    """ε of DP-SGD after ``steps`` Poisson-sampled Gaussian steps (RDP accountant, add/remove
    one example); infinite without noise."""
    if noise_multiplier <= 0:
        return math.inf
    if steps <= 0:
        return 0.0
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)), steps)
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def privacy_report(cfg: DPConfig, num_examples: int, batch_size: int, steps: int) -> Dict:
    """The (ε, δ) a DP-SGD run spent, with everything needed to recompute it."""
    delta = cfg.dp_delta or 1.0 / num_examples
    q = min(1.0, batch_size / num_examples)
    eps = epsilon(cfg.dp_noise_multiplier, q, steps, delta)
    return {"epsilon": eps if math.isfinite(eps) else "inf", "delta": delta,
            "noise_multiplier": cfg.dp_noise_multiplier, "l2_clip": cfg.dp_l2_clip,
            "sampling_rate": q, "steps": steps, "accountant": "dp_accounting RDP, Poisson "
            "sampling, add/remove-one adjacency (batches are shuffled, not Poisson-sampled: "
            "the usual approximation)"}


def wrap(model: keras.Model, cfg: DPConfig, seed: int) -> keras.Model:
    """``model`` wrapped for DP-SGD when ``cfg`` turns it on, else ``model`` itself."""
    check(cfg)
    if not cfg.enabled:
        return model
    return DPSGDModel(model, cfg.dp_l2_clip, cfg.dp_noise_multiplier, seed=seed)
