"""A small untrained but complete run directory, written through slm_tf's own artifact
writers (what train.py writes at the end), for tests of loading, refusing and evaluating."""
import os
import random

from conftest import write_csv

WORDS = ["card", "lost", "rate", "exchange", "transfer", "fee", "pin", "refund", "cash", "top",
         "up", "account", "limit", "blocked", "atm", "charge"]
LABELS = ["card_lost", "exchange_rate", "refund"]


def labelled_rows(n, seed=0):
    """``n`` (text, label) rows cycling through :data:`LABELS`."""
    rng = random.Random(seed)
    return [(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))), LABELS[i % 3])
            for i in range(n)]


def make_run(run_dir, data_dir, rows=30):
    """Writes ``run_dir`` (model.keras, saved_model/, tokenizer/, labels, config, metrics) for
    a bow model over a ``rows``-row CSV next to it; returns the CSV's path."""
    from slm_tf.data.config import DataConfig
    from slm_tf.io_utils import write_json
    from slm_tf.models import ModelConfig, build_model
    from slm_tf.tokenizers import TokenizerConfig, build_tokenizer
    from slm_tf.train import artifacts
    from slm_tf.train.trainer import ExperimentConfig, TrainConfig

    os.makedirs(run_dir, exist_ok=True)
    data = write_csv(os.path.join(os.path.dirname(run_dir), "train.csv"), labelled_rows(rows))
    exp = ExperimentConfig(DataConfig(data=data, data_dir=data_dir, max_seq_len=8),
                           TokenizerConfig(min_frequency=1), ModelConfig(model="bow",
                                                                         embedding_dim=8,
                                                                         hidden_dim=8),
                           TrainConfig(output_dir=run_dir, epochs=1))
    tokenizer = build_tokenizer(exp.tokenizer, [t for t, _ in labelled_rows(rows)])
    tokenizer.save(os.path.join(run_dir, artifacts.TOKENIZER_DIR))
    model = build_model(exp.model, tokenizer.vocab_size, len(LABELS), 8)
    artifacts.save_model(run_dir, model, tokenizer, 8)
    artifacts.save_labels(run_dir, LABELS)
    write_json(os.path.join(run_dir, artifacts.CONFIG_FILE), exp.to_dict())
    write_json(os.path.join(run_dir, artifacts.METRICS_FILE), {"accuracy": 0.0})
    return data
