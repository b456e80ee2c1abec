"""Model zoo: every architecture builds, masks padding, saves/reloads, counts params and FLOPs."""
import numpy as np
import pytest
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from slm_tf.errors import UserError
from slm_tf.models import MODELS, ModelConfig, build_model, describe
from slm_tf.models.flops import flops_per_example

ARCHS = ["transformer", "cnn", "bilstm", "bigru", "bow", "bert"]


def _ids(batch=4, length=16, real=10, seed=0):
    ids = np.random.RandomState(seed).randint(5, 300, (batch, length)).astype("int32")
    ids[:, real:] = 0
    return ids


def test_registry_lists_the_zoo():
    # The classifiers plus the causal language models (tests/test_lm.py).
    assert MODELS.names() == sorted(ARCHS + ["tfidf", "gpt", "lstm_lm", "gru_lm"])
    with pytest.raises(UserError, match="unknown model 'gpt5'"):
        MODELS.get("gpt5")


@pytest.mark.parametrize("arch", ARCHS)
def test_build_predict_save_reload(tmp_path, arch):
    model = build_model(ModelConfig(model=arch, hidden_dim=32, embedding_dim=16, ff_dim=32,
                                    num_filters=8), 300, 7, 16)
    ids = _ids()
    logits = model(ids).numpy()
    assert logits.shape == (4, 7) and np.isfinite(logits).all()
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.models.load_model(path)
    assert type(again) is type(model)
    np.testing.assert_allclose(again(ids).numpy(), logits, atol=1e-6)
    info = describe(model, 16)
    assert info["num_params"] == model.count_params()
    assert info["flops_per_example"] > 0 and info["num_embedding_params"] > 0


@pytest.mark.parametrize("arch", ["transformer", "cnn", "bow", "bert"])
def test_padding_does_not_change_predictions(arch):
    # Extra padding must be invisible: the masks cover attention and pooling.
    model = build_model(ModelConfig(model=arch, hidden_dim=32, embedding_dim=16, ff_dim=32,
                                    num_filters=8, dropout=0.0), 300, 5, 32)
    short = _ids(length=12, real=10)
    long = np.concatenate([short, np.zeros((4, 20), np.int32)], axis=1)
    np.testing.assert_allclose(model(short).numpy(), model(long).numpy(), atol=1e-5)


def test_transformer_flops_and_non_embedding_params_by_hand():
    d, f, L, layers, vocab, classes = 32, 64, 10, 2, 100, 3
    model = build_model(ModelConfig(model="transformer", hidden_dim=d, ff_dim=f,
                                    num_layers=layers, num_heads=4), vocab, classes, L)
    per_layer = 4 * 2 * L * d * d + 2 * 2 * L * L * d + 2 * L * d * f * 2
    assert flops_per_example(model, L) == layers * per_layer + 2 * d * classes
    info = describe(model, L)
    assert info["num_embedding_params"] == vocab * d + L * d
    attn, ffn, norms = 4 * (d * d + d), (d * f + f) + (f * d + d), 2 * 2 * d
    assert info["num_non_embedding_params"] == layers * (attn + ffn + norms) + 2 * d + \
        d * classes + classes


def test_kim_cnn_flops_by_hand():
    model = build_model(ModelConfig(model="cnn", embedding_dim=8, num_filters=4,
                                    kernel_sizes=["2", "3"], hidden_dim=0), 50, 3, 10)
    assert flops_per_example(model, 10) == 2 * 10 * 8 * 4 * (2 + 3) + 2 * 8 * 3


def test_whole_transformer_is_prunable_by_tfmot():
    # Our attention implements PrunableLayer, so tfmot can wrap the whole model.
    model = build_model(ModelConfig(model="transformer", hidden_dim=16, ff_dim=32), 300, 3, 8)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import \
        PruneLowMagnitude
    wrapped = [l for l in pruned.layers if isinstance(l, PruneLowMagnitude)]
    assert any("attention" in l.name for l in wrapped)
    assert pruned(_ids(length=8, real=5)).shape == (4, 3)


def test_residuals_are_add_layers_not_lambdas():
    model = build_model(ModelConfig(model="transformer", hidden_dim=16, ff_dim=32), 50, 3, 8)
    kinds = {type(l).__name__ for l in model.layers}
    assert "Add" in kinds and "TFOpLambda" not in kinds and "Lambda" not in kinds


def test_bag_of_ngrams_by_hand():
    # fastText-style bow: logits = W . mean(token rows + hashed bigram rows) + b, bigram of
    # (left neighbour, token) in bucket (prev * vocab + id) mod buckets, padding excluded.
    vocab, buckets, dim = 50, 11, 4
    model = build_model(ModelConfig(model="bow", embedding_dim=dim, hidden_dim=0,
                                    bigram_buckets=buckets, dropout=0.0), vocab, 3, 8)
    tokens = model.get_layer("token_embedding").get_weights()[0]
    bigrams = model.get_layer("bigram_embedding").get_weights()[0]
    w, b = model.get_layer("logits").get_weights()
    ids = np.array([[2, 9, 31, 4, 0, 0]], np.int32)
    real = [2, 9, 31, 4]
    prev = [0, 2, 9, 31]
    rows = [tokens[i] for i in real] + [bigrams[(p * vocab + i) % buckets]
                                        for p, i in zip(prev, real)]
    expected = np.mean(rows, axis=0) @ w + b
    np.testing.assert_allclose(model(ids).numpy()[0], expected, atol=1e-5)
    # sqrt_n pooling: the same rows summed and divided by sqrt(8).
    model.get_layer("pooling").mode = "sqrt_n"
    expected = np.sum(rows, axis=0) / np.sqrt(len(rows)) @ w + b
    np.testing.assert_allclose(model(ids).numpy()[0], expected, atol=1e-5)
    # Word order now matters (it does not for the plain bag).
    swapped = np.array([[9, 2, 31, 4, 0, 0]], np.int32)
    assert not np.allclose(model(ids).numpy(), model(swapped).numpy(), atol=1e-4)


def test_bag_with_trigrams_by_hand():
    # Trigrams in a table of their own: bucket ((prev2 * vocab + prev) mod B) * vocab + id)
    # mod B, pooled (sqrt_n) with the token and bigram rows; padding excluded.
    vocab, buckets, tri, dim = 50, 11, 13, 4
    model = build_model(ModelConfig(model="bow", embedding_dim=dim, hidden_dim=0,
                                    bigram_buckets=buckets, trigram_buckets=tri, dropout=0.0,
                                    pooling="sqrt_n"), vocab, 3, 8)
    tokens = model.get_layer("token_embedding").get_weights()[0]
    bigrams = model.get_layer("bigram_embedding").get_weights()[0]
    trigrams = model.get_layer("trigram_embedding").get_weights()[0]
    w, b = model.get_layer("logits").get_weights()
    ids = np.array([[2, 9, 31, 4, 0, 0]], np.int32)
    real, prev, prev2 = [2, 9, 31, 4], [0, 2, 9, 31], [0, 0, 2, 9]
    # By hand, e.g. the last trigram (9, 31, 4): (9 * 50 + 31) % 13 = 0, (0 * 50 + 4) % 13 = 4.
    tri_ids = [((p2 * vocab + p) % tri * vocab + i) % tri for p2, p, i in zip(prev2, prev, real)]
    assert tri_ids[3] == 4
    rows = ([tokens[i] for i in real] + [bigrams[(p * vocab + i) % buckets]
                                         for p, i in zip(prev, real)] +
            [trigrams[t] for t in tri_ids])
    expected = np.sum(rows, axis=0) / np.sqrt(len(rows)) @ w + b
    np.testing.assert_allclose(model(ids).numpy()[0], expected, atol=1e-5)
    assert model.count_params() == (vocab + buckets + tri) * dim + dim * 3 + 3
