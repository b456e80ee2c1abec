"""Training callbacks: best-weights tracking with early stopping that survives a restart,
learning-rate logging, a wall-clock budget, throughput, and detecting a resumed run."""
import json
import os
import time

import numpy as np
import tf_keras as keras
from absl import logging

from slm_tf.io_utils import atomic_path, read_json, write_json
from slm_tf.train.optim import current_learning_rate, learning_rate_schedule

BEST_WEIGHTS = "best_weights.npz"
BEST_STATE = "best.json"
TIME_SPENT = "time_spent.json"


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the best epoch on ``monitor`` (highest, or lowest with
    ``mode="min"``) and stops after ``patience`` epochs without improvement. Its state lives on disk, so a resumed run continues the count.

    Epochs before ``select_from_epoch`` are neither candidates nor counted (e.g. pruning
    epochs whose masks have not reached the final sparsity yet)."""

    def __init__(self, directory: str, monitor: str = "val_accuracy", patience: int = 3,
                 target: keras.Model = None, select_from_epoch: int = 0, mode: str = "max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.mode = mode
        self.target = target  # whose weights to keep (e.g. the student inside a Distiller)
        self.select_from_epoch = select_from_epoch
        self.directory = directory
        self.monitor = monitor
        self.patience = patience
        self.state = {"best": None, "best_epoch": -1, "epochs_since_best": 0}
        path = os.path.join(directory, BEST_STATE)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.state = json.load(f)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or epoch < self.select_from_epoch:
            return
        if self.state["best"] is None or self._better(value, self.state["best"]):
            # Plain arrays (not .weights.h5): they load into mirrored variables as well.
            weights = (self.target or self.model).get_weights()
            with atomic_path(os.path.join(self.directory, BEST_WEIGHTS)) as tmp:
                np.savez(tmp, *weights)
            self.state.update(best=float(value), best_epoch=epoch, epochs_since_best=0)
        else:
            self.state["epochs_since_best"] += 1
        write_json(os.path.join(self.directory, BEST_STATE), self.state)
        if self.patience and self.state["epochs_since_best"] >= self.patience:
            logging.info("early stopping: %s has not improved for %d epochs (best %.4f at "
                         "epoch %d)", self.monitor, self.patience, self.state["best"],
                         self.state["best_epoch"] + 1)
            self.model.stop_training = True

    def _better(self, value: float, best: float) -> bool:
        return value > best if self.mode == "max" else value < best

    def restore_best(self, model) -> None:
        path = os.path.join(self.directory, BEST_WEIGHTS)
        if os.path.exists(path):
            with np.load(path) as f:
                model.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the current learning rate to the epoch logs (so TensorBoard plots it)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)


class TimeBudget(keras.callbacks.Callback):
    """Stops training once ``minutes`` of training time are spent, and tells the learning-rate
    schedule (``WarmupDecay.time_fraction``) how much of the budget is gone, so the decay ends
    with the budget. Time spent before a crash counts: it is kept in ``state_path`` at every
    epoch end, where a resumed run picks it up."""

    def __init__(self, minutes: float, state_path: str):
        super().__init__()
        self.budget = 60.0 * minutes
        self.state_path = state_path
        self.spent_before = 0.0
        self.time_fraction = None  # the schedule's variable, found when training begins
        self.start = time.monotonic()

    def spent(self) -> float:
        return self.spent_before + time.monotonic() - self.start

    def on_train_begin(self, logs=None):
        if os.path.exists(self.state_path):
            self.spent_before = float(read_json(self.state_path)["seconds"])
        # Looked up once: the batch hook runs on every training step.
        schedule = learning_rate_schedule(self.model.optimizer)
        self.time_fraction = getattr(schedule, "time_fraction", None)
        self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        share = min(1.0, self.spent() / self.budget)
        if self.time_fraction is not None:
            self.time_fraction.assign(share)
        if share >= 1.0 and not self.model.stop_training:
            logging.info("time budget of %.1f minutes spent: training stops", self.budget / 60)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        write_json(self.state_path, {"seconds": self.spent()})


class Throughput(keras.callbacks.Callback):
    """Measures training examples per second over the batches of this process."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.examples = 0
        self.batches = 0
        self.seconds = 0.0
        self._t = None

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._t is not None:
            self.seconds += time.perf_counter() - self._t
            self.examples += self.batch_size
            self.batches += 1

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0


class ResumeTracker(keras.callbacks.Callback):
    """Records the epoch training (re)started at: > 0 means it resumed from a checkpoint."""

    def __init__(self):
        super().__init__()
        self.start_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.start_epoch is None:
            self.start_epoch = epoch
            if epoch > 0:
                logging.info("resumed from the checkpoint at the end of epoch %d", epoch)
