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
