"""Integrated gradients: completeness on zoo models (incl. BERT), faithfulness on a toy task
decided by one token, and the HTML heat map escaping the text."""
import numpy as np
import pytest
import tf_keras as keras

from slm_tf.models import ModelConfig, build_model
from slm_tf.trust.explain import Explanation, IntegratedGradients, heatmap_html

SEQ = 12
TINY = dict(embedding_dim=16, hidden_dim=16, num_layers=1, num_heads=2, ff_dim=32,
            num_filters=8, kernel_sizes=["2", "3"], dropout=0.0)


def _row(words):
    ids = np.zeros(SEQ, np.int32)
    ids[:len(words) + 2] = [2, *words, 3]
    mask = np.zeros(SEQ, np.float32)
    mask[1:1 + len(words)] = 1
    return ids, mask


@pytest.mark.parametrize("arch,scale", [("cnn", 4), ("bert", 1), ("bigru", 8)])
def test_attributions_sum_to_the_probability_change(arch, scale):
    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(model=arch, **TINY), 60, 4, SEQ)
    head = model.layers[-1]  # untrained logits are near-uniform: spread them
    head.set_weights([w * scale for w in head.get_weights()])
    ids, mask = _row([7, 19, 33, 41, 5, 28])
    ig = IntegratedGradients(model, steps=64)
    # Explain the class whose probability moves most, so the sum is far from zero.
    x = ig.embedding(ids[None])
    p = ig.probabilities(ids[None], x).numpy()[0]
    p0 = ig.probabilities(ids[None], x * (1 - mask[None, :, None])).numpy()[0]
    r = ig.attribute(ids, mask, label=int(np.argmax(np.abs(p - p0))))
    diff = r["probability"] - r["baseline_probability"]
    attr = r["per_position"]
    assert abs(diff) > 0.02, diff  # the check below is not trivially satisfied
    assert abs(attr.sum() - diff) <= 0.03 * abs(diff) + 1e-3, (attr.sum(), diff)
    assert np.all(attr[mask == 0] == 0)  # special tokens and padding keep their embedding


@pytest.mark.integration  # trains a toy model for ~15 s
def test_the_token_that_decides_the_label_gets_the_top_attribution():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    magic = 4
    rows, labels = [], []
    for i in range(600):
        words = list(rng.integers(5, 60, rng.integers(3, 9)))
        if i % 2:
            words[rng.integers(len(words))] = magic
        rows.append(_row(words)[0])
        labels.append(i % 2)
    model = build_model(ModelConfig(model="cnn", **TINY), 60, 2, SEQ)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(np.array(rows), np.array(labels), epochs=8, batch_size=32, verbose=0)
    ig = IntegratedGradients(model, steps=32)
    hits = 0
    for k in range(20):
        words = list(rng.integers(5, 60, 6))
        pos = k % 6
        words[pos] = magic
        ids, mask = _row(words)
        r = ig.attribute(ids, mask)
        assert r["label"] == 1
        hits += int(np.argmax(r["per_position"][1:7]) == pos)
    assert hits >= 19, hits


def test_heatmap_escapes_the_text():
    e = Explanation(["<b>", "ok"], np.array([0.5, -0.2]), "a&b", 0, 0.9, 0.1, 0.0)
    page = heatmap_html([e], ["<script>alert(1)</script>"])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt;" in page and "a&amp;b" in page
