"""Losses, metrics and prediction for token classifiers; targets < 0 mark untagged positions
([CLS], [SEP], later word pieces, padding — see :mod:`slm_tf.ner.offsets`)."""
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from slm_tf.models.crf import CRF, CRFLoss, viterbi_decode_np


class TokenCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy averaged over the tagged positions of each sequence."""

    def __init__(self, name: str = "token_cross_entropy"):
        super().__init__(name=name, reduction=keras.losses.Reduction.NONE)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        mask = tf.cast(y_true >= 0, y_pred.dtype)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(y_true, 0), y_pred)
        return tf.reduce_sum(ce * mask, -1) / tf.maximum(tf.reduce_sum(mask, -1), 1.0)


def token_accuracy(y_true, y_pred):
    """Keras metric: per-position argmax accuracy over the tagged positions."""
    y_true = tf.cast(y_true, tf.int32)
    mask = tf.cast(y_true >= 0, tf.float32)
    hit = tf.cast(tf.equal(tf.argmax(y_pred, -1, output_type=tf.int32), y_true), tf.float32)
    return tf.reduce_sum(hit * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def entity_tag_f1(y_true, y_pred):
    """Keras metric: F1 of the entity tags (every tag but ``O``, id 0 in ``tag_set``) over the
    tagged positions, from the per-position argmax. The best-epoch monitor: on entity-sparse
    data (tweets) token accuracy is highest for a model that tags everything ``O``."""
    y_true = tf.cast(y_true, tf.int32)
    tagged = y_true >= 0
    pred = tf.argmax(y_pred, -1, output_type=tf.int32)
    gold_e = tf.logical_and(tagged, y_true > 0)
    pred_e = tf.logical_and(tagged, pred > 0)
    hit = tf.reduce_sum(tf.cast(tf.logical_and(gold_e, tf.equal(pred, y_true)), tf.float32))
    total = tf.reduce_sum(tf.cast(gold_e, tf.float32)) + tf.reduce_sum(tf.cast(pred_e,
                                                                               tf.float32))
    return 2.0 * hit / tf.maximum(total, 1.0)


def crf_layer(model) -> Optional[CRF]:
    """The model's CRF layer or None: a ``TokenClassifier``'s, or one inside the plain
    functional graphs compression trains (also when a QAT wrapper holds it)."""
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, CRF):
            return inner
    return None


def tagger_loss(model) -> keras.losses.Loss:
    """The CRF's negative log-likelihood when the model has a CRF, else token cross-entropy."""
    crf = crf_layer(model)
    return CRFLoss(crf) if crf is not None else TokenCrossEntropy()


def decode(model, logits: np.ndarray, tagged: Optional[np.ndarray] = None) -> np.ndarray:
    """Tag ids ``[B, L]`` from per-token logits: Viterbi over the ``tagged`` positions when the
    model has a CRF, else the per-position argmax."""
    crf = crf_layer(model)
    if crf is None:
        return np.asarray(logits).argmax(-1)
    if tagged is None:
        tagged = np.ones(np.asarray(logits).shape[:2], bool)
    return viterbi_decode_np(logits, tagged, *crf.params())
