"""Knowledge distillation: the losses and the Distiller model (imported lazily by
``slm_tf.distill``, since it loads TensorFlow)."""
from slm_tf.distill.distiller import (STUDENT_IDS, TEACHER_FEATURES, TEACHER_IDS,
                                      TEACHER_LOGITS, Distiller, with_features)
from slm_tf.distill.losses import distillation_loss, kd_loss, masked_cross_entropy

__all__ = ["Distiller", "kd_loss", "distillation_loss", "masked_cross_entropy", "STUDENT_IDS",
           "TEACHER_IDS", "TEACHER_LOGITS", "TEACHER_FEATURES", "with_features"]
