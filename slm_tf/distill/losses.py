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


def top_k_buckets(logits: tf.Tensor, top_ids: tf.Tensor) -> tf.Tensor:
    """Log-probabilities (``T = 1``) of ``logits`` ``[..., V]`` grouped into ``k + 1`` buckets:
    the classes ``top_ids`` ``[..., k]`` (each its own bucket) and, when ``k < V``, all the
    other classes together (the last column: the log of the mass outside the k). The
    teacher-cache writer and :func:`sparse_kd_loss` both use it, so teacher and student are
    bucketed the same way."""
    logits = tf.cast(logits, tf.float32)
    top_ids = tf.cast(top_ids, tf.int32)
    log_p = tf.nn.log_softmax(logits, axis=-1)
    top = tf.gather(log_p, top_ids, batch_dims=len(top_ids.shape) - 1)
    vocab, k = logits.shape[-1], top_ids.shape[-1]
    if k >= vocab:  # nothing outside the k
        return top
    # The rest as a log-sum-exp over the classes not in top_ids (exact and stable even when
    # the k hold nearly all the mass, where log(1 - sum p_top) would lose every digit).
    flat_ids = tf.reshape(top_ids, [-1, k])
    rows = tf.repeat(tf.range(tf.shape(flat_ids)[0]), k)
    chosen = tf.scatter_nd(tf.stack([rows, tf.reshape(flat_ids, [-1])], axis=1),
                           tf.ones([tf.size(flat_ids)], tf.float32),
                           tf.stack([tf.shape(flat_ids)[0], vocab]))
    flat = tf.reshape(log_p, [-1, vocab])
    rest = tf.reduce_logsumexp(tf.where(chosen > 0, tf.fill(tf.shape(flat), -1e9), flat),
                               axis=-1)
    return tf.concat([top, tf.reshape(rest, tf.concat([tf.shape(top)[:-1], [1]], 0))], -1)


def sparse_kd_loss(top_ids: tf.Tensor, teacher_buckets: tf.Tensor, student_logits: tf.Tensor,
                   temperature: float) -> tf.Tensor:
    """:func:`kd_loss` against a teacher kept as its ``k`` most likely classes (a cache for
    vocabularies too large to store whole): ``teacher_buckets`` ``[..., k + 1]`` is
    :func:`top_k_buckets` of the teacher (its top-k log-probabilities and the log of the mass
    outside them), and the student is bucketed the same way at ``top_ids``. The KL is taken
    between the two ``k + 1``-bucket distributions, each tempered by ``T`` after bucketing:
    with ``k = V`` (``teacher_buckets`` ``[..., V]``, no rest) it is exactly the full KD loss;
    with ``k < V`` it is the KL of the coarse-grained distributions at ``T = 1`` (at most the
    full KL), zero when the student matches the teacher, and the student keeps the teacher's
    mass outside the k instead of being pushed to put all of it on them (a renormalized top-k
    teacher said that mass was 0: on a 4.7k-character vocabulary at ``T = 2`` its top 64 held
    15% of the probability)."""
    t = tf.convert_to_tensor(temperature, tf.float32)
    top_ids = tf.cast(top_ids, tf.int32)
    teacher_buckets = tf.cast(teacher_buckets, tf.float32)
    if teacher_buckets.shape[-1] not in (top_ids.shape[-1], top_ids.shape[-1] + 1):
        raise ValueError(f"teacher buckets {teacher_buckets.shape} do not fit top ids "
                         f"{top_ids.shape}: expected k or k + 1 columns")
    student = top_k_buckets(student_logits, top_ids)
    if student.shape[-1] != teacher_buckets.shape[-1]:
        raise ValueError(f"teacher buckets {teacher_buckets.shape} vs student buckets "
                         f"{student.shape}: a top-k cache keeps k + 1 columns when k < V")
    scaled = teacher_buckets / t
    teacher = tf.nn.softmax(scaled, axis=-1)
    log_teacher = tf.nn.log_softmax(scaled, axis=-1)
    log_student = tf.nn.log_softmax(student / t, axis=-1)
    return tf.square(t) * tf.reduce_sum(teacher * (log_teacher - log_student), axis=-1)


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
