"""``Distiller``: a keras.Model that trains a student to match a frozen teacher.

Inputs are dicts: ``student_ids`` always; either ``teacher_ids`` (the teacher runs online,
frozen) or ``teacher_logits`` (computed once and cached, with ``teacher_features`` when the
intermediate term is on), or ``teacher_top_ids`` + ``teacher_logits`` (a cache of the
teacher's k most likely classes per position: their log-probabilities and that of the rest,
``losses.top_k_buckets``). Labels of -1 mark unlabeled transfer examples,
which only get the soft terms. The student is a plain zoo model and is saved alone.

Token-level tasks (language models, token classification) distil per position: their batches
are ``(inputs, labels[B, L], mask[B, L])`` - Keras's sample-weight slot carries the mask of
the positions that count (0 = padding) - and the student/teacher logits are ``[B, L, V]``.
A task only supplies those labels and that mask; the loss, metrics and caching are shared.
"""
from typing import Optional

import tensorflow as tf
import tf_keras as keras

from slm_tf.distill.config import KD_ALPHA, KD_TEMPERATURE
from slm_tf.distill.losses import (distillation_loss, global_counts, replica_sum,
                                    token_distillation_loss)

STUDENT_IDS, TEACHER_IDS = "student_ids", "teacher_ids"
TEACHER_LOGITS, TEACHER_FEATURES = "teacher_logits", "teacher_features"
TEACHER_TOP_IDS = "teacher_top_ids"  # with TEACHER_LOGITS holding those classes' logits
# Every zoo model feeds its pooled sentence vector into this layer of the classifier head.
FEATURE_LAYER = "head_dropout"


def with_features(model: keras.Model) -> keras.Model:
    """``ids -> [logits, pooled features]`` sharing ``model``'s layers and weights."""
    return keras.Model(model.inputs, [model.output, model.get_layer(FEATURE_LAYER).input])


class Distiller(keras.Model):
    """Temperature-scaled KD: ``alpha * CE(y, s) + (1 - alpha) * T^2 * KL(t/T || s/T)``,
    plus ``feature_weight * MSE(W s_h, t_h)`` between the pooled sentence vectors when
    ``feature_weight > 0`` (``W`` a learned projection to the teacher's width; it trains with
    the student and is dropped afterwards). The pooled vectors are compared rather than
    per-token states because student and teacher may tokenize differently.

    ``temperature`` and ``alpha`` are variables, so a callback can schedule them.
    """

    def __init__(self, student: keras.Model, teacher: Optional[keras.Model] = None,
                 temperature: float = KD_TEMPERATURE, alpha: float = KD_ALPHA, feature_weight: float = 0.0,
                 teacher_feature_dim: Optional[int] = None, entity_tag_f1: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.temperature = tf.Variable(float(temperature), trainable=False, name="temperature")
        self.alpha = tf.Variable(float(alpha), trainable=False, name="alpha")
        self.feature_weight = float(feature_weight)
        names = ["loss", "ce_loss", "kd_loss", "agreement"]
        if self.feature_weight:
            names.append("feature_loss")
            self._student_features = with_features(student)
            if teacher is not None:
                self._teacher_features = with_features(teacher)
                teacher_feature_dim = int(self._teacher_features.outputs[1].shape[-1])
            if not teacher_feature_dim:
                raise ValueError("feature distillation needs the teacher or teacher_feature_dim")
            self.projection = keras.layers.Dense(teacher_feature_dim, name="feature_projection")
        self._trackers = {name: keras.metrics.Mean(name=name) for name in names}
        # A mean of per-batch accuracies weighted by their labelled counts (= accuracy), fed
        # global counts under a strategy (see _record).
        self._accuracy = keras.metrics.Mean(name="accuracy")
        # Tagging tasks (label 0 = O): F1 of the entity tags, the NER best-epoch monitor (on
        # entity-sparse tweets token accuracy is best for a student that tags everything O).
        # Batch F1s weighted by their gold + predicted entity-tag counts average to the
        # epoch's micro F1.
        self._tag_f1 = keras.metrics.Mean(name="entity_tag_f1") if entity_tag_f1 else None
        self.distribute_reduction_method = "first"

    @property
    def metrics(self):
        extra = [self._tag_f1] if self._tag_f1 is not None else []
        return [*self._trackers.values(), self._accuracy, *extra]

    def call(self, inputs, training=False):
        return self.student(inputs[STUDENT_IDS], training=training)

    def _teacher_outputs(self, inputs):
        """(logits, pooled features or None) of the teacher, cached or computed online;
        a top-k cache gives ``(ids, logits)`` in place of the logits."""
        if TEACHER_TOP_IDS in inputs:
            return (inputs[TEACHER_TOP_IDS], tf.cast(inputs[TEACHER_LOGITS], tf.float32)), None
        if TEACHER_LOGITS in inputs:
            return (tf.cast(inputs[TEACHER_LOGITS], tf.float32),
                    inputs.get(TEACHER_FEATURES) if self.feature_weight else None)
        if self.teacher is None:
            raise ValueError("no teacher: pass teacher= or cached 'teacher_logits' inputs")
        if self.feature_weight:
            logits, feats = self._teacher_features(inputs[TEACHER_IDS], training=False)
            return tf.stop_gradient(logits), tf.stop_gradient(feats)
        return tf.stop_gradient(self.teacher(inputs[TEACHER_IDS], training=False)), None

    def _student_outputs(self, inputs, training):
        if self.feature_weight:
            return self._student_features(inputs[STUDENT_IDS], training=training)
        return self.student(inputs[STUDENT_IDS], training=training), None

    def _loss_terms(self, labels, mask, teacher, t_feats, student, s_feats):
        """This replica's share of the global-batch loss and of each term (see
        ``distillation_loss``): summed over the replicas they are the global averages.
        Token-level tasks average over this replica's positions (distill.py runs them on one
        replica)."""
        if mask is None:  # one label per example (classification)
            counts = global_counts(labels)
            loss, ce, kd = distillation_loss(labels, teacher, student, self.temperature,
                                             self.alpha, counts)
            examples = counts[1]
        else:
            loss, ce, kd = token_distillation_loss(labels, mask, teacher, student,
                                                   self.temperature, self.alpha)
            examples = tf.cast(tf.shape(labels)[0], tf.int64)
        terms = {"ce_loss": ce, "kd_loss": kd}
        if self.feature_weight:
            per_example = tf.reduce_mean(tf.square(
                self.projection(s_feats) - tf.cast(t_feats, tf.float32)), axis=-1)
            feat = tf.nn.compute_average_loss(per_example, global_batch_size=examples)
            loss += self.feature_weight * feat
            terms["feature_loss"] = feat
        return loss, terms

    def _record(self, labels, mask, teacher, student, loss, terms):
        # Every replica records the global-batch values (all-reduced) and Keras reports one
        # replica's (distribute_reduction_method "first"), so on every worker the logs, early
        # stopping and the best epoch are those of the global batch. With one replica the
        # values are the batch's own: accuracy and agreement weighted by their counts.
        # A top-k teacher's first id is its argmax (tf.math.top_k sorts).
        top = teacher[0][..., 0] if isinstance(teacher, (tuple, list)) else \
            tf.argmax(teacher, -1)
        predicted = tf.argmax(student, -1)
        agree = tf.cast(tf.equal(tf.cast(top, tf.int64), predicted), tf.float32)
        weight = tf.ones_like(agree) if mask is None else tf.cast(mask, tf.float32)
        labels = tf.cast(labels, tf.int64)
        known = tf.cast(labels >= 0, tf.float32) * weight
        correct = tf.cast(tf.equal(labels, predicted), tf.float32) * known
        gold_e = known * tf.cast(labels > 0, tf.float32)
        pred_e = known * tf.cast(predicted > 0, tf.float32)
        totals = replica_sum({"loss": loss, "terms": terms,
                              "counts": tf.stack([tf.reduce_sum(agree * weight),
                                                  tf.reduce_sum(weight),
                                                  tf.reduce_sum(correct),
                                                  tf.reduce_sum(known),
                                                  tf.reduce_sum(correct * gold_e),
                                                  tf.reduce_sum(gold_e + pred_e)])})
        self._trackers["loss"].update_state(totals["loss"])
        for name, value in totals["terms"].items():
            self._trackers[name].update_state(value)
        agreed, n, right, n_known, tag_hits, tag_total = tf.unstack(totals["counts"])
        self._trackers["agreement"].update_state(tf.math.divide_no_nan(agreed, n),
                                                 sample_weight=n)
        self._accuracy.update_state(tf.math.divide_no_nan(right, n_known),
                                    sample_weight=n_known)
        if self._tag_f1 is not None:
            self._tag_f1.update_state(tf.math.divide_no_nan(2.0 * tag_hits, tag_total),
                                      sample_weight=tag_total)
        logs = {m.name: m.result() for m in self.metrics}
        logs.update(temperature=self.temperature.value(), alpha=self.alpha.value())
        return logs

    def train_step(self, data):
        inputs, labels, mask = _unpack(data)
        teacher, t_feats = self._teacher_outputs(inputs)
        with tf.GradientTape() as tape:
            student, s_feats = self._student_outputs(inputs, training=True)
            loss, terms = self._loss_terms(labels, mask, teacher, t_feats, student, s_feats)
        variables = self.student.trainable_variables
        if self.feature_weight:
            variables = variables + self.projection.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._record(labels, mask, teacher, student, loss, terms)

    def test_step(self, data):
        inputs, labels, mask = _unpack(data)
        teacher, t_feats = self._teacher_outputs(inputs)
        student, s_feats = self._student_outputs(inputs, training=False)
        loss, terms = self._loss_terms(labels, mask, teacher, t_feats, student, s_feats)
        return self._record(labels, mask, teacher, student, loss, terms)


def _unpack(data):
    """``(inputs, labels, mask)``; the mask is None for one label per example, all ones for
    token labels given without one."""
    inputs, labels, mask = keras.utils.unpack_x_y_sample_weight(data)
    if labels.shape.rank == 1:
        return inputs, labels, None
    return inputs, labels, tf.ones_like(labels, tf.float32) if mask is None else mask
