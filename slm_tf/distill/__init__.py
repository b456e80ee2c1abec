"""Knowledge distillation: losses, the Distiller model, teacher-output caching. The configs
(:mod:`slm_tf.distill.config`) import without TensorFlow; the names below load
:mod:`slm_tf.distill.kd` (TensorFlow) on first use."""
import importlib


def __getattr__(name):
    """Loads the losses and the Distiller (TensorFlow) on first use."""
    if name.startswith("__"):
        raise AttributeError(name)
    kd = importlib.import_module("slm_tf.distill.kd")
    try:
        return getattr(kd, name)
    except AttributeError:
        raise AttributeError(f"module 'slm_tf.distill' has no attribute {name!r}") from None
