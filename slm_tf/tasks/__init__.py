"""Tasks: the learning problems the run framework serves (see :mod:`slm_tf.tasks.base`)."""
from slm_tf.tasks.base import DEFAULT_TASK, TASKS, Task, get_task
from slm_tf.tasks import classification  # noqa: F401  (registers "classification")

__all__ = ["DEFAULT_TASK", "TASKS", "Task", "get_task"]
