"""The run framework is task-generic: a task registered here (regressing a text's word count,
nothing like classification) trains, resumes its best epoch on a *minimized* metric, writes a
complete run with its own files and metrics, and evaluates through the same entry points."""
import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from slm_tf.data.config import DataConfig
from slm_tf.io_utils import read_json, write_json
from slm_tf.models import ModelConfig, PaddingMask
from slm_tf.tasks import TASKS, Task, get_task
from slm_tf.tokenizers import TokenizerConfig
from slm_tf.train import artifacts
from slm_tf.train.callbacks import BestWeights
from slm_tf.train.optim import optimizer_for
from slm_tf.train.trainer import ExperimentConfig, TrainConfig, train

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


@dataclasses.dataclass
class _Texts:
    name: str
    splits: dict

    def texts(self, split):
        return self.splits[split]

    def summary(self):
        return {"name": self.name, "sizes": {k: len(v) for k, v in self.splits.items()}}


class WordCountTask(Task):
    """Regress the number of words of a text (mean squared error, lower is better)."""

    name = "word_count_test"
    monitor = "val_loss"
    monitor_mode = "min"
    headline = "mae"
    higher_is_better = False
    summary_metrics = ("mae",)
    artifact_files = ("scale.json",)

    def prepare_data(self, dcfg):
        rng = np.random.RandomState(0)
        make = lambda n: [" ".join(rng.choice(WORDS, rng.randint(1, 9))) for _ in range(n)]
        return _Texts("word_counts", {"train": make(96), "validation": make(32),
                                      "test": make(32)})

    def build_model(self, model_cfg, tokenizer, data, dcfg):
        # A linear read-out of the padding mask can count tokens exactly (words + 2 specials).
        ids = keras.Input((dcfg.max_seq_len,), dtype="int32", name="ids")
        return keras.Model(ids, keras.layers.Dense(1)(PaddingMask()(ids)))

    def _ds(self, data, split, tokenizer, dcfg):
        texts = data.texts(split)
        ids = tokenizer.encode(texts, dcfg.max_seq_len)
        y = np.array([[len(t.split())] for t in texts], np.float32)
        return tf.data.Dataset.from_tensor_slices((ids, y)).batch(dcfg.batch_size)

    def datasets(self, data, tokenizer, dcfg, tcfg):
        return (self._ds(data, "train", tokenizer, dcfg),
                self._ds(data, "validation", tokenizer, dcfg))

    def compile(self, model, tcfg, total_steps):
        model.compile(optimizer=optimizer_for(tcfg, total_steps), loss="mse")

    def evaluate(self, model, data, split, tokenizer, dcfg, log_dir=None, step=0):
        ds = self._ds(data, split, tokenizer, dcfg)
        pred = np.concatenate([model(x).numpy() for x, _ in ds])[:, 0]
        true = np.array([len(t.split()) for t in data.texts(split)], np.float32)
        return {"mae": float(np.abs(pred - true).mean()), "num_examples": len(true)}

    def run_metrics(self, test, validation):
        return {"mae": test["mae"], "validation": {"mae": validation["mae"]}}

    def save_artifacts(self, run_dir, data):
        write_json(os.path.join(run_dir, "scale.json"), {"unit": "words"})


@pytest.fixture(scope="module")
def word_count_task():
    TASKS.register(WordCountTask.name)(WordCountTask)
    yield WordCountTask.name
    TASKS._items.pop(WordCountTask.name)  # pylint: disable=protected-access


def test_best_weights_keeps_the_lowest_epoch_when_minimizing(tmp_path):
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(1,))])
    cb = BestWeights(str(tmp_path), monitor="val_loss", patience=0, mode="min")
    cb.set_model(model)
    losses = [3.0, 1.5, 2.0, 0.7, 0.9]  # best (lowest) at epoch index 3
    for epoch, loss in enumerate(losses):
        model.layers[0].kernel.assign([[float(epoch)]])
        cb.on_epoch_end(epoch, {"val_loss": loss})
    assert cb.state["best_epoch"] == 3 and cb.state["best"] == 0.7
    cb.restore_best(model)
    assert float(model.layers[0].kernel.numpy()[0, 0]) == 3.0
    with pytest.raises(ValueError):
        BestWeights(str(tmp_path), mode="lowest")


def test_a_registered_task_trains_through_the_one_framework(tmp_path, word_count_task,
                                                            data_dir):
    run_dir = str(tmp_path / "run")
    exp = ExperimentConfig(
        DataConfig(data="unused", data_dir=data_dir, max_seq_len=12, batch_size=16),
        TokenizerConfig(tokenizer="wordpiece", vocab_size=60, min_frequency=1),
        ModelConfig(model="bow"),
        TrainConfig(output_dir=run_dir, epochs=15, learning_rate=5e-2, warmup_fraction=0.0,
                    early_stopping_patience=0, task=word_count_task, seed=3))
    metrics = train(exp)
    # The task's own metric (not accuracy) heads metrics.json; the run records its task.
    assert metrics["task"] == word_count_task and "accuracy" not in metrics
    assert read_json(os.path.join(run_dir, "metrics.json"))["mae"] == metrics["mae"]
    assert read_json(os.path.join(run_dir, "config.json"))["train"]["task"] == word_count_task
    # Learned something: far better than predicting the mean word count (an independent
    # baseline computed from the data).
    data = get_task(word_count_task).prepare_data(exp.data)
    counts = np.array([len(t.split()) for t in data.texts("test")], np.float32)
    train_mean = np.mean([len(t.split()) for t in data.texts("train")])
    assert metrics["mae"] < 0.6 * np.abs(counts - train_mean).mean()
    # Completeness follows the task's files; the saved run reloads with its task.
    assert artifacts.is_complete(run_dir)
    os.remove(os.path.join(run_dir, "scale.json"))
    assert not artifacts.is_complete(run_dir)
    write_json(os.path.join(run_dir, "scale.json"), {"unit": "words"})
    run = artifacts.load_run(run_dir)
    assert run.task == word_count_task and run.label_names == []


def test_unknown_task_is_a_user_error():
    from slm_tf.errors import UserError
    with pytest.raises(UserError, match="unknown task 'nope'.*classification"):
        get_task("nope")
