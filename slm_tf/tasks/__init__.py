"""Tasks: the learning problems the run framework serves (see :mod:`slm_tf.tasks.base`)."""
from slm_tf.tasks.base import DEFAULT_TASK, TASKS, Task, get_task
from slm_tf.tasks import classification  # noqa: F401  (registers "classification")
from slm_tf.tasks import ner  # noqa: F401  (registers "ner")
from slm_tf.tasks import lm  # noqa: F401  (registers "lm")
from slm_tf.tasks import mlm  # noqa: F401  (registers "mlm")

__all__ = ["DEFAULT_TASK", "TASKS", "Task", "get_task"]

# train.py's --task choices are declared TensorFlow-free in slm_tf.train.config; fail at import
# (not at a user's run) when a task is registered without being listed there, or vice versa.
from slm_tf.train.config import TASK_NAMES  # noqa: E402

if set(TASKS.names()) != set(TASK_NAMES) or TASK_NAMES[0] != DEFAULT_TASK:
    raise ImportError(f"slm_tf.train.config.TASK_NAMES {TASK_NAMES} must list the registered "
                      f"tasks {tuple(TASKS.names())}, the default ({DEFAULT_TASK}) first")
