"""tf.distribute strategies by name."""
from typing import Tuple

import tensorflow as tf

from slm_tf.registry import Registry
from slm_tf.train.config import STRATEGY_NAMES

STRATEGIES = Registry("strategy", STRATEGY_NAMES)
STRATEGIES.register("default")(tf.distribute.get_strategy)
STRATEGIES.register("mirrored")(tf.distribute.MirroredStrategy)
# Reads the cluster from TF_CONFIG; without it, a one-worker cluster on this machine.
STRATEGIES.register("multi_worker")(tf.distribute.MultiWorkerMirroredStrategy)
STRATEGIES.check_complete()


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy registered as ``name``."""
    return STRATEGIES.get(name)()


def worker_role(strategy: tf.distribute.Strategy) -> Tuple[bool, int, int]:
    """``(is_chief, task index, number of workers)`` of this process in ``strategy``'s cluster.

    Without a multi-worker cluster this process is the only worker and the chief. As in Keras'
    own multi-worker callbacks, the chief is task ``chief`` or, when the cluster has none,
    ``worker`` 0.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True, 0, 1
    spec = resolver.cluster_spec().as_dict()
    workers = sum(len(spec.get(kind, [])) for kind in ("chief", "worker"))
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                        and "chief" not in spec)
    return is_chief, task_id, max(1, workers)


def wait_for_all_workers(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker of ``strategy``'s cluster has called it (an all-reduce)."""
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)),
                    axis=None)
