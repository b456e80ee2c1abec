"""Knowledge distillation: losses, the Distiller model, teacher-output caching. The configs
(:mod:`slm_tf.distill.config`) import without TensorFlow; the names below load
:mod:`slm_tf.distill.kd` (TensorFlow) on first use."""
from slm_tf.lazy import forward_to


__getattr__ = forward_to(__name__, "slm_tf.distill.kd")
