"""Weight clustering with ``tfmot.clustering.keras``: every weight tensor of a clustered layer
keeps at most N distinct values (so it compresses well), optionally keeping its zeros
(sparsity-preserving clustering after pruning).

tfmot clusters Dense, Conv1D, Embedding and Bidirectional LSTM/GRU itself. Our attention
layer is a ``ClusterableLayer`` whose weights live in ``Dense`` sublayers; tfmot's wrapper for
sublayer weights (the one it uses for Keras' MultiHeadAttention) clusters them, and
:class:`ClusterAttention` gives it a strip that returns a clean layer. LayerNormalization
scales and the position table are left unclustered (a few hundred values each).
"""
from typing import Dict, List

import numpy as np
import tf_keras as keras
import tensorflow_model_optimization as tfmot
# The sublayer-weights wrapper is not exported; it is the one tfmot's own cluster_weights
# uses for attention layers.
from tensorflow_model_optimization.python.core.clustering.keras.cluster_wrapper import (
    ClusterWeightsMHA)

from slm_tf.compress.config import CompressConfig, match_override, parse_layer_clusters
from slm_tf.compress.rebuild import clone_with
from slm_tf.models.layers import MultiHeadSelfAttention

clustering = tfmot.clustering.keras
_INITS = {"kmeans_plus_plus": clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
          "density_based": clustering.CentroidInitialization.DENSITY_BASED,
          "linear": clustering.CentroidInitialization.LINEAR}
_CLUSTERABLE = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Embedding,
                keras.layers.Bidirectional, MultiHeadSelfAttention)


class ClusterAttention(ClusterWeightsMHA):
    """Clusters the projection kernels of a :class:`MultiHeadSelfAttention`.

    tfmot's strip for sublayer weights leaves tensors where the projections' kernel
    variables were; this one returns a fresh attention layer holding the clustered values.
    """

    def strip_clustering(self):
        self.update_clustered_weights_associations()
        clean = self.layer.__class__.from_config(self.layer.get_config())
        clean.build(self.build_input_shape)
        for name in MultiHeadSelfAttention.PROJECTIONS:
            source, target = getattr(self.layer, name), getattr(clean, name)
            target.set_weights([np.asarray(source.kernel), source.bias.numpy()])
        return clean


def _kernel_sizes(layer) -> List[int]:
    if isinstance(layer, MultiHeadSelfAttention):
        return [int(np.prod(w.shape)) for w in layer.get_prunable_weights()]
    return [int(np.prod(w.shape)) for w in layer.trainable_weights if len(w.shape) >= 2]


def plan(model: keras.Model, cfg: CompressConfig) -> Dict[str, int]:
    """Clusters per layer name, for every layer that gets clustered.

    A tensor with no more values than clusters is already "clustered"; such layers are
    skipped (k-means cannot place more centroids than points).
    """
    rules = parse_layer_clusters(cfg.layer_clusters)
    out = {}
    for layer in model.layers:
        if not isinstance(layer, _CLUSTERABLE) or not layer.weights:
            continue
        n = match_override(layer.name, rules)
        n = cfg.cluster if n is None else n
        if n and min(_kernel_sizes(layer) or [0]) > n:
            out[layer.name] = n
    return out


def cluster(model: keras.Model, cfg: CompressConfig, preserve_sparsity: bool) -> keras.Model:
    """``model`` with tfmot clustering wrappers on the layers :func:`plan` lists."""
    clusters = plan(model, cfg)
    init = _INITS[cfg.cluster_init]

    def wrap(layer):
        n = clusters.get(layer.name)
        if n is None:
            return layer
        if isinstance(layer, MultiHeadSelfAttention):
            return ClusterAttention(layer, n, init, preserve_sparsity)
        # (tfmot 0.8.1's `experimental` namespace is empty; the public function forwards
        # preserve_sparsity to the same implementation.)
        return clustering.cluster_weights(layer, number_of_clusters=n,
                                          cluster_centroids_init=init,
                                          preserve_sparsity=preserve_sparsity)
    return clone_with(model, wrap)


def strip(model: keras.Model) -> keras.Model:
    """Removes the clustering wrappers; the weights keep their clustered values."""
    return clustering.strip_clustering(model)


def callbacks(log_dir: str) -> list:
    """Cluster-count summaries for TensorBoard."""
    return [clustering.ClusteringSummaries(log_dir=log_dir)]
