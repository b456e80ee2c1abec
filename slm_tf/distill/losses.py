"""Knowledge-distillation losses as pure functions of logits."""
from typing import Optional, Tuple

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


def replica_sum(value):
    """``value`` (a tensor or nest of tensors) summed over every replica in sync; ``value``
    itself outside a ``tf.distribute`` replica or with a single replica."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def global_counts(labels) -> Tuple[tf.Tensor, tf.Tensor]:
    """``(labelled examples, all examples)`` of the global batch: this replica's counts summed
    over every replica in sync (the denominators of the global-batch averages)."""
    labels = tf.cast(labels, tf.int32)
    local = tf.stack([tf.reduce_sum(tf.cast(labels >= 0, tf.float32)),
                      tf.cast(tf.size(labels), tf.float32)])
    total = tf.cast(tf.round(replica_sum(local)), tf.int64)
    return total[0], total[1]


def distillation_loss(labels, teacher_logits, student_logits, temperature: float, alpha: float,
                      counts: Optional[Tuple] = None):
    """``alpha * CE(y, s) + (1 - alpha) * T^2 * KL``; also returns both terms.

    CE is averaged over the labelled examples of the global batch, KD over all of them. Each
    value is this replica's share of those global averages (its per-example losses summed and
    divided by the global count, ``tf.nn.compute_average_loss``): the optimizer sums the
    replicas' gradients, so with N replicas that sum is the gradient of the global average, not
    N times it, and ``replica_sum`` of the values is the global loss. ``counts`` =
    ``(labelled, all)`` over the global batch, by default all-reduced (``global_counts``); with
    one replica these are the batch's own averages.
    """
    n_known, n_all = counts if counts is not None else global_counts(labels)
    ce = tf.nn.compute_average_loss(masked_cross_entropy(labels, student_logits),
                                    global_batch_size=n_known)
    kd = tf.nn.compute_average_loss(kd_loss(teacher_logits, student_logits, temperature),
                                    global_batch_size=n_all)
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
