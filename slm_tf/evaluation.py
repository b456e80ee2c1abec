"""Evaluate a saved run on any split of a registered dataset or any labelled file."""
import dataclasses
import filecmp
import os
from typing import Dict

from absl import logging

from slm_tf.data.config import AUTO, EVAL_SPLITS, DataConfig  # noqa: F401  (re-exported)
from slm_tf.data.readers import DataError
from slm_tf.data.sources import ALL, DATASETS
from slm_tf.io_utils import write_json
from slm_tf.tasks import get_task
from slm_tf.train.artifacts import EVAL_DIR, load_run, require_complete

# Options that decide which rows land in which split: taken from the run when the data is the
# run's own, so "test" means the run's held-out test rows and never rows it trained on.
_SPLIT_OPTIONS = ("validation_data", "test_data", "validation_fraction", "test_fraction",
                  "split_seed")


def is_training_data(run_data: Dict, data_cfg: DataConfig) -> bool:
    """True when ``data_cfg.data`` is the data the run was trained on (the same registered
    name, or the same file or folder by path or by content)."""
    mine, theirs = data_cfg.data, str(run_data.get("data", ""))
    if mine in DATASETS or theirs in DATASETS:
        return mine == theirs
    if not (os.path.exists(mine) and os.path.exists(theirs)):
        return False
    if os.path.realpath(mine) == os.path.realpath(theirs):
        return True
    return os.path.isfile(mine) and os.path.isfile(theirs) and \
        filecmp.cmp(mine, theirs, shallow=False)


def resolve_split(split: str, run_data: Dict, data_cfg: DataConfig) -> str:
    """``auto`` becomes ``test`` for the run's own training data and ``all`` for any other."""
    if split not in EVAL_SPLITS:
        raise DataError(f"--split must be one of {EVAL_SPLITS}, got {split!r}")
    if split != AUTO:
        return split
    return "test" if is_training_data(run_data, data_cfg) else ALL


def evaluate_run(run_dir: str, data_cfg: DataConfig, split: str = AUTO,
                 write: bool = True) -> Dict:
    """Scores the run's model on ``split`` of ``data_cfg.data`` (see :data:`EVAL_SPLITS`)
    with the run's own task.

    The sequence length is the run's own. Writes ``eval/<data>_<split>.json`` and TensorBoard
    summaries.
    """
    if split not in EVAL_SPLITS:
        raise DataError(f"--split must be one of {EVAL_SPLITS}, got {split!r}")
    require_complete(run_dir)
    run = load_run(run_dir)
    run_data = run.config.get("data", {})
    split = resolve_split(split, run_data, data_cfg)
    if is_training_data(run_data, data_cfg):
        defaults = DataConfig()
        taken = {k: run_data[k] for k in _SPLIT_OPTIONS
                 if k in run_data and getattr(data_cfg, k) == getattr(defaults, k)}
        data_cfg = dataclasses.replace(data_cfg, **taken)
        logging.info("%s is the run's training data: split as in training (%s); scoring %s",
                     data_cfg.data, taken, split)
    else:
        logging.info("%s is not the run's training data: scoring %s", data_cfg.data,
                     "the whole file" if split == ALL else f"its {split} split")
    data_cfg = dataclasses.replace(data_cfg, max_seq_len=run.max_seq_len)
    report, data = get_task(run.task).evaluate_saved(run, data_cfg, split)
    # Private entries (e.g. the raw logits a task keeps for calibration) are not report data.
    report = {k: v for k, v in report.items() if not k.startswith("_")}
    report.update(data=data.summary(), split=split, run_dir=run_dir)
    if write:
        write_json(os.path.join(run_dir, EVAL_DIR, f"{data.name}_{split}.json"), report)
    return report
