"""tf.distribute strategies by name."""
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
