"""A linear-chain conditional random field: transition scores (plus start/end scores) over
per-token emission logits, trained by the forward algorithm, decoded by Viterbi.

Written here because the maintained TF addons that offered one are gone (TensorFlow Addons is
end-of-life and does not support TF 2.21).

Masks may have holes, not only trailing padding: a position with mask 0 is skipped and the chain
joins the positions on both sides of it. That is what first-subword labelling needs ([CLS],
later word pieces and [SEP] carry no tag).

The layer is an identity on the emissions that owns the transition weights, so the exported
graph stays plain (per-token logits, builtin TFLite ops); decoding runs either in numpy
(:func:`viterbi_decode_np`, the bundle's documented decoding step) or in-graph with a loop
unrolled over a static length (:func:`viterbi_decode_tf`).
"""
from typing import Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from slm_tf.models.layers import _NothingToPrune, serializable


@serializable
class CRF(keras.layers.Layer, _NothingToPrune):
    """Holds ``transitions[from, to]``, ``start`` and ``end`` scores; passes emissions through."""

    def __init__(self, num_tags: int, **kwargs):
        super().__init__(**kwargs)
        self.num_tags = num_tags

    def build(self, input_shape):
        init = keras.initializers.Zeros()
        self.transitions = self.add_weight("transitions", shape=(self.num_tags, self.num_tags),
                                           initializer=init)
        self.start = self.add_weight("start", shape=(self.num_tags,), initializer=init)
        self.end = self.add_weight("end", shape=(self.num_tags,), initializer=init)
        super().build(input_shape)

    def call(self, emissions):
        return tf.identity(emissions)

    def params(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(transitions, start, end)`` as numpy arrays (for decoding outside TF)."""
        return self.transitions.numpy(), self.start.numpy(), self.end.numpy()

    def get_config(self):
        return {**super().get_config(), "num_tags": self.num_tags}


def crf_log_likelihood(emissions, tags, mask, transitions, start, end):
    """Per-sequence ``log p(tags | emissions)`` (0 for a sequence with no unmasked position).

    ``emissions`` [B, T, K] float, ``tags`` [B, T] int (any value where masked), ``mask``
    [B, T] (1 = tagged position).
    """
    emissions = tf.convert_to_tensor(emissions, tf.float32)
    k = tf.shape(emissions)[-1]
    mask = tf.cast(mask, tf.float32)
    tags = tf.where(mask > 0, tf.cast(tags, tf.int32), 0)
    one_hot = tf.one_hot(tags, k)  # [B, T, K]
    # Time-major for the scan.
    e_t = tf.transpose(emissions, [1, 0, 2])
    m_t = tf.transpose(mask, [1, 0])
    y_t = tf.transpose(one_hot, [1, 0, 2])
    batch = tf.shape(emissions)[0]
    init = (tf.zeros([batch, k]),  # alpha: log-sum of all paths ending in each tag
            tf.zeros([batch]),  # score of the gold path so far
            tf.zeros([batch, k]),  # one-hot of the previous gold tag
            tf.zeros([batch]))  # started: 1 once a tagged position was seen

    def step(carry, inputs):
        alpha, score, prev_y, started = carry
        e, m, y = inputs
        first_alpha = start[tf.newaxis] + e
        next_alpha = tf.reduce_logsumexp(alpha[:, :, tf.newaxis] + transitions[tf.newaxis],
                                         axis=1) + e
        new_alpha = tf.where(started[:, tf.newaxis] > 0, next_alpha, first_alpha)
        first_score = tf.reduce_sum(y * (start[tf.newaxis] + e), -1)
        trans = tf.reduce_sum(tf.matmul(prev_y, transitions) * y, -1)
        next_score = score + trans + tf.reduce_sum(y * e, -1)
        new_score = tf.where(started > 0, next_score, first_score)
        keep = m[:, tf.newaxis] > 0
        return (tf.where(keep, new_alpha, alpha), tf.where(m > 0, new_score, score),
                tf.where(keep, y, prev_y), tf.maximum(started, m))

    alpha, score, last_y, started = tf.scan(step, (e_t, m_t, y_t), initializer=init)
    alpha, score, last_y, started = alpha[-1], score[-1], last_y[-1], started[-1]
    log_z = tf.reduce_logsumexp(alpha + end[tf.newaxis], axis=-1)
    score = score + tf.reduce_sum(last_y * end[tf.newaxis], -1)
    return (score - log_z) * started


class CRFLoss(keras.losses.Loss):
    """Mean negative log-likelihood; targets < 0 are masked (untagged) positions."""

    def __init__(self, crf: CRF, name: str = "crf_loss"):
        super().__init__(name=name, reduction=keras.losses.Reduction.NONE)
        # A closure, not an attribute: Keras' saver walks a compiled model's loss objects, and
        # a layer reached through the loss first has its weights filed under the loss.
        self._params = lambda: (crf.transitions, crf.start, crf.end)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        mask = tf.cast(y_true >= 0, tf.float32)
        ll = crf_log_likelihood(y_pred, y_true, mask, *self._params())
        return -ll


def viterbi_decode_np(emissions: np.ndarray, mask: np.ndarray, transitions: np.ndarray,
                      start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Best tag per position ``[B, T]`` (0 where masked): the bundle's decoding step.

    For each sequence: ``score[y] = start[y] + e[first][y]``; at each next tagged position
    ``score[y] = max_x(score[x] + transitions[x, y]) + e[t][y]`` remembering the argmax;
    finally add ``end`` and follow the remembered argmaxes back.
    """
    emissions = np.asarray(emissions, np.float64)
    out = np.zeros(emissions.shape[:2], np.int64)
    for b in range(emissions.shape[0]):
        pos = np.flatnonzero(np.asarray(mask[b]) > 0)
        if not len(pos):
            continue
        score = start + emissions[b, pos[0]]
        back = []
        for t in pos[1:]:
            cand = score[:, None] + transitions
            back.append(cand.argmax(0))
            score = cand.max(0) + emissions[b, t]
        best = [int(np.argmax(score + end))]
        for ptr in reversed(back):
            best.append(int(ptr[best[-1]]))
        out[b, pos] = best[::-1]
    return out


def viterbi_decode_tf(emissions, mask, transitions, start, end):
    """In-graph Viterbi, ``[B, T]`` int32 (0 where masked), unrolled over the static length T.

    Only builtin TFLite ops (add, max, argmax, one-hot multiply-sum, select), so a model can
    export with its decoding inside: the graph grows linearly with T.
    """
    steps = emissions.shape[1]
    if steps is None:
        raise ValueError("viterbi_decode_tf needs a static sequence length")
    k = transitions.shape[0]
    mask = tf.cast(mask, tf.float32)
    score = None
    started = tf.zeros_like(mask[:, 0])
    backs = []
    for t in range(steps):
        e, m = emissions[:, t], mask[:, t:t + 1]
        first = start[tf.newaxis] + e
        if score is None:
            new = tf.where(m > 0, first, tf.zeros_like(first))
            back = -tf.ones_like(e, tf.int32)  # no predecessor
        else:
            cand = score[:, :, tf.newaxis] + transitions[tf.newaxis]
            back = tf.cast(tf.argmax(cand, axis=1), tf.int32)
            cont = tf.reduce_max(cand, axis=1) + e
            new = tf.where(started[:, tf.newaxis] > 0, cont, first)
            # A skipped position passes every tag through to itself.
            back = tf.where(started[:, tf.newaxis] > 0, back, -tf.ones_like(back))
            new = tf.where(m > 0, new, score)
            back = tf.where(m > 0, back, tf.broadcast_to(tf.range(k)[tf.newaxis], tf.shape(back)))
        backs.append(back)
        score = new
        started = tf.maximum(started, m[:, 0])
    best = tf.cast(tf.argmax(score + end[tf.newaxis], axis=-1), tf.int32)
    tags = []
    for t in reversed(range(steps)):
        tags.append(best)
        pick = tf.one_hot(best, k, dtype=tf.int32)
        prev = tf.reduce_sum(backs[t] * pick, axis=-1)
        # Before the first tagged position the pointer is -1: keep the tag (masked anyway).
        best = tf.where(prev >= 0, prev, best)
    tags = tf.stack(tags[::-1], axis=1)
    return tags * tf.cast(mask, tf.int32)
