"""AdamW with linear warmup and linear/cosine/no decay."""
import math

import tensorflow as tf
import tf_keras as keras

from slm_tf.models.layers import serializable

# Norm scales and biases are not weights to shrink (BERT's recipe).
NO_DECAY = ["bias", "LayerNorm", "layer_norm", "_norm", "position_embedding"]


@serializable
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then ``decay`` to 0 at ``total_steps``.

    ``time_fraction`` (a variable a ``TimeBudget`` callback sets to the share of a wall-clock
    budget spent) moves the schedule on to ``time_fraction * total_steps`` when that is further
    than the step count, so a time-budgeted run ends annealed whatever the machine's speed."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, decay: str = "linear"):
        if decay not in ("linear", "cosine", "constant"):
            raise ValueError(f"decay must be linear, cosine or constant, got {decay!r}")
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)
        self.decay = decay
        self.time_fraction = tf.Variable(0.0, trainable=False, name="time_fraction")

    def __call__(self, step):
        step = tf.maximum(tf.cast(step, tf.float32),
                          tf.cast(self.time_fraction, tf.float32) * float(self.total_steps))
        warm = self.peak * step / max(self.warmup_steps, 1)
        frac = tf.clip_by_value((step - self.warmup_steps)
                                / float(self.total_steps - self.warmup_steps), 0.0, 1.0)
        if self.decay == "linear":
            after = self.peak * (1.0 - frac)
        elif self.decay == "cosine":
            after = self.peak * 0.5 * (1.0 + tf.cos(math.pi * frac))
        else:
            after = tf.constant(self.peak)
        return tf.where(step < self.warmup_steps, warm, after)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "decay": self.decay}


def make_optimizer(learning_rate: float, weight_decay: float, warmup_steps: int,
                   total_steps: int, decay: str, clip_norm: float = 1.0,
                   clip_global: bool = False) -> keras.optimizers.Optimizer:
    """AdamW on the warmup/decay schedule; norms, biases and positions are not decayed.
    Gradients are clipped to ``clip_norm`` (0: not at all), each variable's on its own or,
    with ``clip_global``, all together."""
    clip = {("global_clipnorm" if clip_global else "clipnorm"): clip_norm} if clip_norm else {}
    opt = keras.optimizers.AdamW(
        learning_rate=WarmupDecay(learning_rate, warmup_steps, total_steps, decay),
        weight_decay=weight_decay, **clip)
    opt.exclude_from_weight_decay(var_names=NO_DECAY)
    return opt


def optimizer_for(tcfg, total_steps: int) -> keras.optimizers.Optimizer:
    """AdamW with a run's schedule (a ``TrainConfig``: peak rate, decay, warmup share, weight
    decay, gradient clipping) over ``total_steps``."""
    return make_optimizer(tcfg.learning_rate, tcfg.weight_decay,
                          int(total_steps * tcfg.warmup_fraction), total_steps, tcfg.decay,
                          tcfg.clip_norm, tcfg.clip_global)


def learning_rate_schedule(optimizer):
    """The optimizer's ``LearningRateSchedule``, or None when its rate is a constant."""
    # tf_keras's ``optimizer.learning_rate`` gives a schedule-driven optimizer's last applied
    # value (a variable), not the schedule; the schedule itself is only kept here.
    lr = getattr(optimizer, "_learning_rate", None)
    return lr if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule) else None


def current_learning_rate(optimizer) -> float:
    """The learning rate the optimizer applies at its current step."""
    schedule = learning_rate_schedule(optimizer)
    if schedule is not None:
        return float(schedule(optimizer.iterations))
    lr = optimizer.learning_rate
    return float(tf.keras.backend.get_value(lr)) if not hasattr(lr, "numpy") else float(lr.numpy())
