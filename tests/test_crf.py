"""CRF: forward algorithm and Viterbi against brute-force enumeration; masks with holes."""
import itertools

import numpy as np
import pytest

import slm_tf  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from slm_tf.models.crf import (CRF, CRFLoss, crf_log_likelihood, viterbi_decode_np,
                               viterbi_decode_tf)

K, T = 3, 5
MASKS = np.array([[1, 1, 1, 1, 1],   # full
                  [1, 1, 1, 0, 0],   # trailing padding
                  [0, 1, 0, 1, 1],   # holes: [CLS] and a later word piece
                  [0, 0, 0, 0, 0]])  # nothing tagged


def _params(seed):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(len(MASKS), T, K)).astype(np.float32),
            rng.normal(size=(K, K)).astype(np.float32), rng.normal(size=K).astype(np.float32),
            rng.normal(size=K).astype(np.float32))


def _score(e, y, trans, start, end):
    """The score of one tag path over the tagged positions (written out, not vectorized)."""
    total = start[y[0]] + end[y[-1]]
    for i, tag in enumerate(y):
        total += e[i, tag]
        if i:
            total += trans[y[i - 1], tag]
    return total


def _brute_force(e_row, mask_row, trans, start, end):
    pos = np.flatnonzero(mask_row)
    if not len(pos):
        return 0.0, {}
    scores = {y: _score(e_row[pos].astype(np.float64), y, trans, start, end)
              for y in itertools.product(range(K), repeat=len(pos))}
    return np.logaddexp.reduce(list(scores.values())), scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_algorithm_equals_enumeration(seed):
    e, trans, start, end = _params(seed)
    rng = np.random.default_rng(seed + 10)
    tags = rng.integers(0, K, size=(len(MASKS), T))
    ll = crf_log_likelihood(e, tags, MASKS, trans, start, end).numpy()
    for b in range(len(MASKS)):
        log_z, scores = _brute_force(e[b], MASKS[b], trans, start, end)
        pos = np.flatnonzero(MASKS[b])
        expected = scores[tuple(tags[b, pos])] - log_z if len(pos) else 0.0
        assert ll[b] == pytest.approx(expected, abs=1e-4)
        if len(pos):
            # The probabilities of all paths sum to one.
            assert np.exp(np.logaddexp.reduce([s - log_z for s in scores.values()])) == \
                pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_viterbi_equals_brute_force_argmax(seed):
    e, trans, start, end = _params(seed)
    np_tags = viterbi_decode_np(e, MASKS, trans, start, end)
    tf_tags = viterbi_decode_tf(tf.constant(e), tf.constant(MASKS), tf.constant(trans),
                                tf.constant(start), tf.constant(end)).numpy()
    for b in range(len(MASKS)):
        _, scores = _brute_force(e[b], MASKS[b], trans, start, end)
        pos = np.flatnonzero(MASKS[b])
        expected = np.zeros(T, np.int64)
        if scores:
            expected[pos] = max(scores, key=scores.get)
        assert np_tags[b].tolist() == expected.tolist()
        assert tf_tags[b].tolist() == expected.tolist()


@pytest.mark.integration
def test_crf_learns_a_transition_rule():
    # Emissions carry no information about the second tag; only the transition rule
    # "tag 1 follows tag 1, tag 2 follows tag 2" lets the CRF get it right.
    rng = np.random.default_rng(0)
    n, length = 256, 4
    first = rng.integers(1, 3, size=n)
    y = np.stack([first, first, np.zeros(n, int), np.full(n, -1)], axis=1)
    x = np.zeros((n, length, 3), np.float32)
    x[np.arange(n), 0, first] = 1.0
    x[:, 2, 0] = 1.0
    inp = keras.Input((length, 3))
    crf = CRF(3)
    out = crf(keras.layers.Dense(3)(inp))
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(0.1), loss=CRFLoss(crf))
    model.fit(x, y, epochs=30, batch_size=64, verbose=0)
    tags = viterbi_decode_np(model.predict(x, verbose=0), y >= 0, *crf.params())
    assert (tags[:, :3] == y[:, :3]).mean() == 1.0
    trans = crf.params()[0]
    assert trans[1, 1] > trans[1, 2] and trans[2, 2] > trans[2, 1]
