"""The CNN tagger's bigram hashing and padding invariance, and the length-sorted training
batches that rely on it."""
import numpy as np
import pytest
import tensorflow as tf

import slm_tf  # noqa: F401
from slm_tf.models import ModelConfig, build_tagger
from slm_tf.models.layers import HashedBigrams, ReverseByLength
from slm_tf.tasks.ner import length_batches


def test_hashed_bigrams_by_hand():
    ids = tf.constant([[5, 7, 2, 0]], tf.int32)
    # left neighbours 0, 5, 7, 2: (0*10+5)%13, (5*10+7)%13, (7*10+2)%13, (2*10+0)%13
    assert HashedBigrams(10, 13)(ids).numpy().tolist() == [[5, 5, 7, 7]]
    # Trigrams, one neighbour at a time: ((p2*10 + p) % 13 * 10 + id) % 13 over the triples
    # (0, 0, 5), (0, 5, 7), (5, 7, 2), (7, 2, 0): 5 % 13, 57 % 13, (57 % 13 = 5) * 10 + 2 = 52
    # -> 0, (72 % 13 = 7) * 10 + 0 = 70 -> 5.
    assert HashedBigrams(10, 13, order=3)(ids).numpy().tolist() == [[5, 5, 0, 5]]
    with pytest.raises(ValueError, match="overflow int32"):
        HashedBigrams(100_000, 30_000, order=3)


def test_reverse_by_length_by_hand():
    x = tf.constant([[[1.], [2.], [3.], [0.], [0.]], [[4.], [5.], [0.], [0.], [0.]]])
    mask = tf.constant([[1., 1., 1., 0., 0.], [1., 1., 0., 0., 0.]])
    out = ReverseByLength()([x, mask])
    assert out.numpy()[..., 0].tolist() == [[3, 2, 1, 0, 0], [5, 4, 0, 0, 0]]
    np.testing.assert_array_equal(ReverseByLength()([out, mask]).numpy(), x.numpy())


@pytest.mark.parametrize("rnn_units", [0, 6])
def test_cnn_tagger_states_do_not_depend_on_padding(rnn_units):
    """Also with the bidirectional GRU: its backward direction reads each sentence reversed
    up to its length (Keras' Bidirectional would start in the padding)."""
    tf.keras.utils.set_random_seed(0)
    cfg = ModelConfig(model="cnn", kernel_sizes=["3"], num_filters=8, dilations=["1", "2"],
                      bigram_buckets=50, hidden_dim=0, crf=True, embedding_dim=8,
                      rnn_units=rnn_units)
    model = build_tagger(cfg, 30, 5, 20)
    sentence = [2, 9, 4, 17, 3, 3, 8]
    short = np.zeros((1, 10), np.int32)
    long = np.zeros((1, 20), np.int32)
    short[0, :7] = long[0, :7] = sentence
    a = model(short, training=False).numpy()[0, :7]
    b = model(long, training=False).numpy()[0, :7]
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(a).max() > 1e-3  # the weights are not all zero (the check would be vacuous)
    if rnn_units:  # the GRU sees the whole sentence: changing the last token moves the first
        changed = long.copy()
        changed[0, 6] = 11
        c = model(changed, training=False).numpy()[0, :7]
        assert np.abs(c[0] - b[0]).max() > 1e-6


def test_length_batches_keep_every_row_once_and_trim():
    rng = np.random.default_rng(0)
    n, width, batch = 100, 30, 8
    lengths = rng.integers(1, width + 1, n)
    ids = np.zeros((n, width), np.int32)
    targets = np.full((n, width), -1, np.int32)
    for i, k in enumerate(lengths):
        ids[i, :k] = i + 1  # the row number identifies the sentence
        targets[i, :k] = i % 5
    ds = length_batches(tf.data.Dataset.from_tensor_slices((ids, targets)).shuffle(n, seed=1),
                        batch, n, seed=1, window=4)
    assert int(ds.cardinality()) == -(-n // batch)
    seen, positions = [], 0
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == -(-n // batch)
    for b_ids, b_targets in batches:
        row_lengths = (b_ids != 0).sum(1)
        assert b_ids.shape[1] == row_lengths.max()  # trimmed to its longest sentence
        positions += b_ids.size
        for row, k, t in zip(b_ids, row_lengths, b_targets):
            i = int(row[0]) - 1
            assert k == lengths[i] and (row[:k] == i + 1).all() and (t[:k] == i % 5).all()
            seen.append(i)
    assert sorted(seen) == list(range(n))
    assert positions < 0.75 * n * width  # sorted windows pad far less than fixed padding


def test_entity_tag_f1_by_hand():
    from slm_tf.ner.training import entity_tag_f1
    y_true = np.array([[0, 1, 2, -1], [3, 0, 0, -1]])
    pred = np.array([[0, 1, 1, 3], [3, 3, 0, 0]])
    logits = np.eye(4, dtype=np.float32)[pred]
    # gold entity tags 3; predicted entity tags at tagged positions 4; 2 of them right.
    assert float(entity_tag_f1(y_true, logits)) == pytest.approx(2 * 2 / (3 + 4))
    assert float(entity_tag_f1(y_true, np.eye(4, dtype=np.float32)[np.zeros_like(pred)])) == 0.0


@pytest.mark.integration  # writes a SavedModel of a QAT graph (tens of seconds when loaded)
def test_qat_gru_tagger_keeps_its_crf_and_saves(tmp_path):
    """QAT wraps every layer of the GRU-CRF tagger; the CRF is still found (decoding and the
    loss need it) and the SavedModel writes, although a QAT recurrent layer's own call reads a
    fake-quantized kernel that a SavedModel cannot capture."""
    from slm_tf.compress.quantization import quantize
    from slm_tf.models.crf import CRF
    from slm_tf.ner.training import crf_layer, decode
    from slm_tf.tokenizers import TokenizerConfig, build_tokenizer
    from slm_tf.train.artifacts import save_saved_model
    tf.keras.utils.set_random_seed(0)
    cfg = ModelConfig(model="cnn", kernel_sizes=["3"], num_filters=8, dilations=["1"],
                      bigram_buckets=50, hidden_dim=0, crf=True, embedding_dim=8, rnn_units=4)
    model = build_tagger(cfg, 30, 5, 12)
    model.crf.transitions.assign(np.eye(5, dtype=np.float32) * 50.0)  # Viterbi must see it
    qat = quantize(model)
    assert crf_layer(qat) is not None and crf_layer(qat) is not model.crf
    assert isinstance(crf_layer(qat), CRF)
    ids = np.array([[2, 9, 4, 17, 3, 0, 0, 0, 0, 0, 0, 0]], np.int32)
    logits = qat(ids, training=False).numpy()
    tags = decode(qat, logits, ids != 0)[0, :5]
    assert len(set(tags.tolist())) == 1  # the huge self-transitions win over any emissions
    tok = build_tokenizer(TokenizerConfig(tokenizer="char", min_frequency=1), ["张三在北京"])
    save_saved_model(str(tmp_path / "saved"), qat, tok, 12)
    loaded = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    np.testing.assert_allclose(loaded(ids=tf.constant(ids))["logits"].numpy(), logits,
                               atol=1e-4)
