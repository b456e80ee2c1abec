"""The task abstraction: what differs between text classification, language modelling and token
classification, so one run framework serves all of them.

The framework (``slm_tf.train.trainer``: run folders, resume, strategies, best-epoch selection,
TensorBoard, artifacts; evaluation, export and the pipeline) asks the run's :class:`Task` for
everything task-shaped: how the data is read and split, which texts teach the tokenizer, how
the model is built and compiled, what a training batch is, and how a split is scored. A task is
registered by name in :data:`TASKS`; ``--task`` picks it and ``config.json`` records it, so
evaluation and export of a saved run find the same task again.
"""
import abc
import math
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

from slm_tf.errors import UserError
from slm_tf.registry import Registry
from slm_tf.train.artifacts import LOG_DIR

TASKS: Registry[type] = Registry("task")
DEFAULT_TASK = "classification"


class Task(abc.ABC):
    """One kind of learning problem. Subclasses are stateless; register the class in
    :data:`TASKS`.

    ``monitor``/``monitor_mode`` name the Keras validation metric that selects the best epoch;
    ``headline``/``higher_is_better`` the test metric reports and comparisons use.
    """

    name = ""
    monitor = "val_accuracy"
    monitor_mode = "max"
    headline = "accuracy"
    higher_is_better = True
    # Test metrics shown next to the hyper-parameters in TensorBoard (headline first).
    summary_metrics: Tuple[str, ...] = ("accuracy",)
    # Files a complete run directory of this task holds beyond the common ones.
    artifact_files: Tuple[str, ...] = ()

    # --- data ----------------------------------------------------------------------------
    @abc.abstractmethod
    def prepare_data(self, dcfg) -> Any:
        """Reads, validates and splits ``dcfg.data``; the result has ``summary()`` and
        whatever the task's other methods need."""

    def with_unlabeled(self, data, texts: List[str]) -> Any:
        """``data`` whose training texts also include ``texts`` (``--unlabeled_data`` of a
        masked-LM pretraining run); other tasks refuse it."""
        raise UserError(f"--unlabeled_data adds text to masked-language pretraining; the "
                        f"{self.name} task does not use it. Fix: use it with "
                        "scripts/pretrain.py --objective=mlm (or with distill.py, where the "
                        "teacher labels it), or put the text into --data.")

    def tokenizer_texts(self, data) -> Iterable[str]:
        """The texts a new tokenizer learns from (the training split)."""
        return data.texts("train")

    def train_size(self, data) -> int:
        """Training examples per epoch (for steps and learning-rate schedules)."""
        return len(data.texts("train"))

    def steps_per_epoch(self, data, batch_size: int) -> int:
        return math.ceil(self.train_size(data) / batch_size)

    # --- model and training --------------------------------------------------------------
    @abc.abstractmethod
    def build_model(self, model_cfg, tokenizer, data, dcfg):
        """A fresh zoo model for this task."""

    def after_checkpoint(self, model) -> Optional[str]:
        """Called once ``--init_checkpoint``'s tensors are loaded into ``model``: initialises
        what the checkpoint lacks from what it has; returns a log line (``None``: nothing)."""
        return None

    @abc.abstractmethod
    def datasets(self, data, tokenizer, dcfg, tcfg):
        """``(train, validation)`` batched tf.data datasets of ``(inputs, targets)``."""

    @abc.abstractmethod
    def compile(self, model, tcfg, total_steps: int) -> None:
        """Compiles ``model`` with the run's optimizer, the task's loss and its metrics (the
        metrics must include the one ``monitor`` names)."""

    # --- scoring -------------------------------------------------------------------------
    @abc.abstractmethod
    def evaluate(self, model, data, split: str, tokenizer, dcfg,
                 log_dir: Optional[str] = None, step: int = 0) -> Dict:
        """The full metrics report of ``model`` on one split (optionally also written to
        TensorBoard under ``log_dir``)."""

    def evaluate_saved(self, run, dcfg, split: str) -> Tuple[Dict, Any]:
        """``(report, data)``: a saved run (``slm_tf.train.artifacts.Run``) scored on
        ``split`` of ``dcfg.data`` (TensorBoard summaries under the run's logs)."""
        data = self.prepare_data(dcfg)  # (a task whose data has no "all" split refuses it)
        log_dir = os.path.join(run.run_dir, LOG_DIR, f"eval_{data.name}_{split}")
        return self.evaluate(run.model, data, split, run.tokenizer, dcfg, log_dir), data

    @abc.abstractmethod
    def run_metrics(self, test: Dict, validation: Dict) -> Dict:
        """The head of ``metrics.json`` from the test and validation reports."""

    def trust(self, validation: Dict, test: Dict, tcfg, run_dir: str) -> Optional[Dict]:
        """Calibration/abstention from the two reports (``slm_tf.trust``), or None when the
        task has no class probabilities to calibrate."""
        return None

    def class_weight(self, data, scheme: str) -> Optional[Dict[int, float]]:
        """Per-class loss weights for ``scheme`` ("none" or "balanced"), or None."""
        return None

    def baseline(self, data) -> Optional[Dict]:
        """A classical model fitted on the same splits (its test metrics include
        ``headline``), or None when the task has none."""
        return None

    # --- artifacts -----------------------------------------------------------------------
    def save_artifacts(self, run_dir: str, data) -> None:
        """Task files written next to the model (e.g. ``labels.json``)."""

    def label_names(self, data) -> List[str]:
        """Output classes/tags, or ``[]`` when outputs are tokens."""
        return []

    # --- export --------------------------------------------------------------------------
    def calibration_inputs(self, run, count: int):
        """Up to ``count`` int32 rows ``[n, max_seq_len]`` of model inputs from the run's
        training split that calibrate int8 activation ranges (default: token ids of an evenly
        spaced sample of the training texts)."""
        from slm_tf.config import from_dict
        from slm_tf.data.config import DataConfig
        texts = self.prepare_data(from_dict(DataConfig, run.config["data"])).texts("train")
        step = max(1, len(texts) // count)
        return run.tokenizer.encode(texts[::step][:count], run.max_seq_len)


def get_task(name: str) -> Task:
    """The task registered as ``name`` (importing the built-in tasks first)."""
    import slm_tf.tasks  # noqa: F401  (registers the built-in tasks)
    return TASKS.get(name or DEFAULT_TASK)()
