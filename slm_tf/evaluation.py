"""Evaluate a saved run on any split of a registered dataset or any labelled file."""
import os
from typing import Dict

from slm_tf.data.config import DataConfig
from slm_tf.data.readers import DataError
from slm_tf.io_utils import write_json
from slm_tf.tasks import get_task
from slm_tf.train.artifacts import load_run

SPLITS = ("train", "validation", "test")


def evaluate_run(run_dir: str, data_cfg: DataConfig, split: str = "test",
                 write: bool = True) -> Dict:
    """Scores the run's model on ``split`` of ``data_cfg.data`` with the run's own task.

    The sequence length is the run's own. Writes ``eval/<data>_<split>.json`` and TensorBoard
    summaries.
    """
    if split not in SPLITS:
        raise DataError(f"--split must be one of {SPLITS}, got {split!r}")
    run = load_run(run_dir)
    data_cfg.max_seq_len = run.max_seq_len
    task = get_task(run.task)
    report, data = task.evaluate_saved(run, data_cfg, split)
    report.update(data=data.summary(), split=split, run_dir=run_dir)
    if write:
        write_json(os.path.join(run_dir, "eval", f"{data.name}_{split}.json"), report)
    return report
