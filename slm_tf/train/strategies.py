"""tf.distribute strategies by name."""
import tensorflow as tf

from slm_tf.registry import Registry

STRATEGIES = Registry("strategy")
STRATEGIES.register("default")(tf.distribute.get_strategy)
STRATEGIES.register("mirrored")(tf.distribute.MirroredStrategy)
# Reads the cluster from TF_CONFIG; without it, a one-worker cluster on this machine.
STRATEGIES.register("multi_worker")(tf.distribute.MultiWorkerMirroredStrategy)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy registered as ``name``."""
    return STRATEGIES.get(name)()
