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


def sparse_kd_loss(top_ids: tf.Tensor, top_logits: tf.Tensor, student_logits: tf.Tensor,
                   temperature: float) -> tf.Tensor:
    """:func:`kd_loss` against a teacher kept as its ``k`` most likely classes only
    (``top_ids``/``top_logits`` ``[..., k]``): the teacher's distribution is renormalized over
    those ``k`` and the student's full log-softmax is read at them (a cache of top-k logits
    for vocabularies too large to store whole)."""
    t = tf.convert_to_tensor(temperature, tf.float32)
    scaled = tf.cast(top_logits, tf.float32) / t
    teacher = tf.nn.softmax(scaled, axis=-1)
    log_teacher = tf.nn.log_softmax(scaled, axis=-1)
    log_student = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / t, axis=-1)
    batch_dims = len(top_ids.shape) - 1
    picked = tf.gather(log_student, tf.cast(top_ids, tf.int32), batch_dims=batch_dims)
    return tf.square(t) * tf.reduce_sum(teacher * (log_teacher - picked), axis=-1)


def teacher_kd_loss(teacher, student_logits: tf.Tensor, temperature: float) -> tf.Tensor:
    """KD per position against a dense teacher (logits) or a top-k one (``(ids, logits)``)."""
    if isinstance(teacher, (tuple, list)):
        return sparse_kd_loss(teacher[0], teacher[1], student_logits, temperature)
    return kd_loss(teacher, student_logits, temperature)


def token_distillation_loss(labels, mask, teacher, student_logits, temperature: float,
                            alpha: float):
    """Token-level KD (language models, token classification): ``alpha * CE(label) +
    (1 - alpha) * T^2 * KL`` per position over ``[B, L, V]`` logits, both averaged over the
    positions ``mask`` counts (0 = padding); labels of -1 (an unlabeled position) only get the
    soft term. ``teacher``: logits ``[B, L, V]`` or top-k ``(ids, logits)``. Returns
    ``(loss, ce, kd)``."""
    w = tf.cast(mask, tf.float32)
    labels = tf.cast(labels, tf.int32)
    known = w * tf.cast(labels >= 0, tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.maximum(labels, 0), logits=tf.cast(student_logits, tf.float32))
    ce = tf.reduce_sum(ce * known) / tf.maximum(tf.reduce_sum(known), 1.0)
    kd = teacher_kd_loss(teacher, student_logits, temperature)
    kd = tf.reduce_sum(kd * w) / tf.maximum(tf.reduce_sum(w), 1.0)
    return alpha * ce + (1.0 - alpha) * kd, ce, kd


def lm_distillation_loss(targets, weights, teacher_logits, student_logits, temperature: float,
                         alpha: float):
    """Token-level KD for language models (next-token targets, ``weights`` 0 on padding):
    :func:`token_distillation_loss`."""
    return token_distillation_loss(targets, weights, teacher_logits, student_logits,
                                   temperature, alpha)
