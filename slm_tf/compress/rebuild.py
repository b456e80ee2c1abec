"""Cloning a model layer by layer (to wrap layers for tfmot) and rebuilding the original
zoo class from a stripped clone.

tfmot works on plain functional graphs: our ``TextClassifier`` subclasses serialize their
own config, not the layer graph, so they are viewed as a plain ``keras.Model`` over the same
layers first. After pruning or clustering is stripped, the weights go back into a fresh
instance of the original class, so the saved ``model.keras`` is the same kind of model that
train.py writes.
"""
from typing import Callable, Dict, List, NamedTuple

import numpy as np
import tf_keras as keras

from slm_tf.errors import UserError


def as_functional(model: keras.Model) -> keras.Model:
    """A plain functional ``keras.Model`` over ``model``'s layers (weights shared)."""
    return keras.Model(model.inputs, model.outputs, name=model.name)


class Swap(NamedTuple):
    """A layer replaced by an equivalent one in a clone: ``use`` goes into the graph (maybe a
    tfmot wrapper around ``target``), ``target`` receives ``source``'s weights."""
    use: keras.layers.Layer
    source: keras.layers.Layer
    target: keras.layers.Layer


def clone_with(model: keras.Model, wrap: Callable) -> keras.Model:
    """Clones ``model``'s graph, passing every layer through ``wrap(layer)``.

    ``wrap`` returns the layer itself (kept and shared), a tfmot wrapper around it (weights
    shared), or a :class:`Swap` for a layer replaced by an equivalent class; a swapped layer
    gets the source's weights (reshaped when only the kernel layout differs) once the clone
    is built.
    """
    swaps: List[Swap] = []

    def clone_function(layer):
        out = wrap(layer)
        if isinstance(out, Swap):
            swaps.append(out)
            return out.use
        return out

    clone = keras.models.clone_model(as_functional(model), clone_function=clone_function)
    for swap in swaps:
        copy_weights(swap.source, swap.target)
    return clone


def copy_weights(source: keras.layers.Layer, target: keras.layers.Layer) -> None:
    """Sets ``target``'s weights from ``source``'s, in order, reshaping each to the target's
    shape when only the layout differs (a Conv1D kernel vs its height-1 Conv2D form)."""
    values = source.get_weights()
    shapes = [tuple(w.shape) for w in target.weights]
    if len(values) != len(shapes):
        raise ValueError(f"{source.name} -> {target.name}: {len(values)} weights for "
                         f"{len(shapes)}")
    out = []
    for value, shape in zip(values, shapes):
        if value.shape != shape:
            if value.size != int(np.prod(shape)):
                raise ValueError(f"{source.name}: cannot reshape {value.shape} to {shape}")
            value = value.reshape(shape)
        out.append(value)
    target.set_weights(out)


def rebuild_like(template: keras.Model, trained: keras.Model) -> keras.Model:
    """A fresh instance of ``template``'s class holding ``trained``'s weights, matched by
    layer name (``trained`` is a stripped clone of ``template``)."""
    fresh = template.__class__.from_config(template.get_config())
    by_name: Dict[str, keras.layers.Layer] = {layer.name: layer for layer in trained.layers}
    for layer in fresh.layers:
        if not layer.weights:
            continue
        if layer.name not in by_name:
            raise UserError(f"internal: layer {layer.name} is missing from the compressed "
                            "model; strip the tfmot wrappers before rebuilding")
        copy_weights(by_name[layer.name], layer)
    return fresh
