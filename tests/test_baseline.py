"""The TF-IDF + linear baseline every classification run is measured against, and the warning
when a model loses to it."""
import numpy as np
import pytest

from conftest import write_csv
from slm_tf.data.config import DataConfig
from slm_tf.models import ModelConfig
from slm_tf.tokenizers import TokenizerConfig
from slm_tf.train.baseline import below_baseline, tfidf_linear_baseline
from slm_tf.train.trainer import ExperimentConfig, TrainConfig, train

TOPICS = {"card": "card lost stolen blocked pin", "loan": "loan rate interest mortgage repay",
          "fx": "exchange currency euro dollar abroad"}


def _texts(n, seed, noise_words=("please", "help", "my", "the", "today", "now")):
    """Each text mixes two keywords of its topic with filler words: a linear model on word
    features separates the topics perfectly."""
    rng = np.random.RandomState(seed)
    rows = []
    for i in range(n):
        label = sorted(TOPICS)[i % 3]
        words = list(rng.choice(TOPICS[label].split(), 2)) + list(rng.choice(noise_words, 3))
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def test_baseline_separates_keyword_topics_and_not_random_labels():
    train, test = _texts(90, 0), _texts(30, 1)
    labels = {name: i for i, name in enumerate(sorted(TOPICS))}
    b = tfidf_linear_baseline([t for t, _ in train], [labels[l] for _, l in train],
                              [t for t, _ in test], [labels[l] for _, l in test])
    assert b["accuracy"] == 1.0 and b["macro_f1"] == 1.0
    rng = np.random.RandomState(2)  # labels independent of the text: about chance (1/3)
    shuffled = tfidf_linear_baseline([t for t, _ in train], list(rng.randint(0, 3, 90)),
                                     [t for t, _ in test], list(rng.randint(0, 3, 30)))
    assert shuffled["accuracy"] < 0.6


def test_below_baseline_respects_the_metric_direction():
    assert below_baseline(0.80, {"accuracy": 0.85})
    assert not below_baseline(0.85, {"accuracy": 0.85})
    assert below_baseline(2.5, {"bits_per_char": 2.4}, higher_is_better=False,
                          metric="bits_per_char")


def test_an_untrained_model_below_the_baseline_is_warned_about(tmp_path, data_dir):
    path = write_csv(tmp_path / "topics.csv", _texts(150, 3))
    # One epoch at a tiny learning rate: the model stays near chance, the baseline is perfect.
    exp = ExperimentConfig(
        DataConfig(data=path, data_dir=data_dir, max_seq_len=12, batch_size=32),
        TokenizerConfig(vocab_size=60, min_frequency=1), ModelConfig(model="bow",
                                                                     embedding_dim=8,
                                                                     hidden_dim=8),
        TrainConfig(output_dir=str(tmp_path / "run"), epochs=1, learning_rate=1e-6))
    m = train(exp)
    assert m["baseline"]["accuracy"] == pytest.approx(1.0)
    assert m["accuracy"] < 0.7
    assert "worse than the baseline" in m["baseline"]["warning"]
    # A model at least as good as the baseline gets no warning (same run, baseline lowered).
    from slm_tf.train.baseline import warn_if_below
    assert warn_if_below("x", m["accuracy"], {**m["baseline"], "accuracy": 0.0}) == ""
