"""Evaluate a saved run on any split of a registered dataset or any labelled file."""
import os
from typing import Dict

from slm_tf.data.config import DataConfig
from slm_tf.data.pipeline import prepare_data
from slm_tf.data.readers import DataError
from slm_tf.io_utils import write_json
from slm_tf.train.artifacts import EVAL_DIR, LOG_DIR, load_run
from slm_tf.train.trainer import evaluate_split

SPLITS = ("train", "validation", "test")


def evaluate_run(run_dir: str, data_cfg: DataConfig, split: str = "test",
                 write: bool = True) -> Dict:
    """Scores the run's model on ``split`` of ``data_cfg.data``.

    The data's labels are matched to the run's labels by name; a label the model never saw is
    an error (or, with ``on_bad_row=skip``, those rows are skipped and counted). The sequence
    length is the run's own. Writes ``eval/<data>_<split>.json`` and TensorBoard summaries.
    """
    if split not in SPLITS:
        raise DataError(f"--split must be one of {SPLITS}, got {split!r}")
    run = load_run(run_dir)
    data_cfg.max_seq_len = run.max_seq_len
    data = prepare_data(data_cfg)
    index = {name: i for i, name in enumerate(run.label_names)}
    unknown = sorted(set(data.label_names) - set(index))
    examples = data.splits.split(split)
    bad = [ex for ex in examples if ex.label in unknown]
    if bad and data_cfg.on_bad_row != "skip":
        raise DataError(f"{bad[0].source}: label {bad[0].label!r} is not one of the model's "
                        f"{len(index)} labels ({len(bad)} rows have unknown labels: "
                        f"{unknown[:5]}). Fix: evaluate on data with the model's labels, or "
                        "pass --on_bad_row=skip to skip those rows (they are counted).")
    if bad:
        data.splits.skipped["label_unknown_to_model"] += len(bad)
    remap = [index.get(name, -1) for name in data.label_names]
    report = evaluate_split(run.model, data, split, run.tokenizer, data_cfg, run.label_names,
                            log_dir=os.path.join(run_dir, LOG_DIR, f"eval_{data.name}_{split}"),
                            label_remap=remap)
    report.update(data=data.summary(), split=split, run_dir=run_dir)
    if write:
        write_json(os.path.join(run_dir, EVAL_DIR, f"{data.name}_{split}.json"), report)
    return report
