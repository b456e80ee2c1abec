"""Knowledge-distillation losses as pure functions of logits."""
import tensorflow as tf


def kd_loss(teacher_logits: tf.Tensor, student_logits: tf.Tensor,
            temperature: float) -> tf.Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))`` per example (Hinton et al., 2015).

    The ``T^2`` keeps the gradient scale of the soft term independent of ``T``.
    """
    t = tf.convert_to_tensor(temperature, tf.float32)
    teacher = tf.nn.softmax(tf.cast(teacher_logits, tf.float32) / t, axis=-1)
    log_teacher = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32) / t, axis=-1)
    log_student = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / t, axis=-1)
    return tf.square(t) * tf.reduce_sum(teacher * (log_teacher - log_student), axis=-1)


def masked_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-example sparse CE; examples labelled -1 (unlabeled transfer data) contribute 0."""
    labels = tf.cast(labels, tf.int32)
    known = labels >= 0
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.maximum(labels, 0), logits=tf.cast(logits, tf.float32))
    return tf.where(known, ce, tf.zeros_like(ce))


def distillation_loss(labels, teacher_logits, student_logits, temperature: float, alpha: float):
    """``alpha * CE(y, s) + (1 - alpha) * T^2 * KL``, averaged; also returns both terms.

    CE is averaged over labelled examples only, KD over all of them.
    """
    ce = masked_cross_entropy(labels, student_logits)
    n_known = tf.maximum(tf.reduce_sum(tf.cast(tf.cast(labels, tf.int32) >= 0, tf.float32)), 1.0)
    ce = tf.reduce_sum(ce) / n_known
    kd = tf.reduce_mean(kd_loss(teacher_logits, student_logits, temperature))
    return alpha * ce + (1.0 - alpha) * kd, ce, kd


def lm_distillation_loss(targets, weights, teacher_logits, student_logits, temperature: float,
                         alpha: float):
    """Token-level KD for language models: ``alpha * CE(next token) + (1 - alpha) * T^2 * KL``
    per token over ``[B, L, V]`` logits, both averaged over tokens with ``weights`` (0 =
    padding); also returns both terms."""
    w = tf.cast(weights, tf.float32)
    n = tf.maximum(tf.reduce_sum(w), 1.0)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(targets, tf.int32), logits=tf.cast(student_logits, tf.float32))
    ce = tf.reduce_sum(ce * w) / n
    kd = tf.reduce_sum(kd_loss(teacher_logits, student_logits, temperature) * w) / n
    return alpha * ce + (1.0 - alpha) * kd, ce, kd
