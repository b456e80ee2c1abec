"""``Distiller``: a keras.Model that trains a student to match a frozen teacher.

Inputs are dicts: ``student_ids`` always; either ``teacher_ids`` (the teacher runs online,
frozen) or ``teacher_logits`` (computed once and cached). Labels of -1 mark unlabeled transfer
examples, which only get the soft term. The student is a plain zoo model and is saved alone.
"""
from typing import Optional

import tensorflow as tf
import tf_keras as keras

from slm_tf.distill.losses import distillation_loss

STUDENT_IDS, TEACHER_IDS, TEACHER_LOGITS = "student_ids", "teacher_ids", "teacher_logits"


class Distiller(keras.Model):
    """Temperature-scaled KD: ``alpha * CE(y, s) + (1 - alpha) * T^2 * KL(t/T || s/T)``.

    ``temperature`` and ``alpha`` are variables, so a callback can schedule them.
    """

    def __init__(self, student: keras.Model, teacher: Optional[keras.Model] = None,
                 temperature: float = 4.0, alpha: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.temperature = tf.Variable(float(temperature), trainable=False, name="temperature")
        self.alpha = tf.Variable(float(alpha), trainable=False, name="alpha")
        self._trackers = {name: keras.metrics.Mean(name=name)
                          for name in ("loss", "ce_loss", "kd_loss", "agreement")}
        self._accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [*self._trackers.values(), self._accuracy]

    def call(self, inputs, training=False):
        return self.student(inputs[STUDENT_IDS], training=training)

    def teacher_logits(self, inputs) -> tf.Tensor:
        if TEACHER_LOGITS in inputs:
            return tf.cast(inputs[TEACHER_LOGITS], tf.float32)
        if self.teacher is None:
            raise ValueError("no teacher: pass teacher= or cached 'teacher_logits' inputs")
        return tf.stop_gradient(self.teacher(inputs[TEACHER_IDS], training=False))

    def _update(self, labels, teacher, student, loss, ce, kd):
        self._trackers["loss"].update_state(loss)
        self._trackers["ce_loss"].update_state(ce)
        self._trackers["kd_loss"].update_state(kd)
        agree = tf.cast(tf.equal(tf.argmax(teacher, -1), tf.argmax(student, -1)), tf.float32)
        self._trackers["agreement"].update_state(agree)
        known = tf.cast(labels, tf.int32) >= 0
        self._accuracy.update_state(tf.maximum(tf.cast(labels, tf.int32), 0), student,
                                    sample_weight=tf.cast(known, tf.float32))
        logs = {m.name: m.result() for m in self.metrics}
        logs.update(temperature=self.temperature.value(), alpha=self.alpha.value())
        return logs

    def train_step(self, data):
        inputs, labels = data
        teacher = self.teacher_logits(inputs)
        with tf.GradientTape() as tape:
            student = self.student(inputs[STUDENT_IDS], training=True)
            loss, ce, kd = distillation_loss(labels, teacher, student, self.temperature,
                                             self.alpha)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._update(labels, teacher, student, loss, ce, kd)

    def test_step(self, data):
        inputs, labels = data
        teacher = self.teacher_logits(inputs)
        student = self.student(inputs[STUDENT_IDS], training=False)
        loss, ce, kd = distillation_loss(labels, teacher, student, self.temperature, self.alpha)
        return self._update(labels, teacher, student, loss, ce, kd)
