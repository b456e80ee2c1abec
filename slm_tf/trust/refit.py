"""Re-choose a finished classifier run's abstention rule (method and target) without
retraining: the run's own validation and test logits, the same temperature fit and threshold
search as training, and ``metrics.json``'s trust block (and ``config.json``'s two flags)
rewritten. Files exported afterwards carry the new rule in-graph."""
import dataclasses
import os
from typing import Dict

from slm_tf.config import from_dict
from slm_tf.data.config import DataConfig
from slm_tf.data.pipeline import prepare_data
from slm_tf.errors import UserError
from slm_tf.io_utils import read_json, write_json
from slm_tf.tasks.classification import PREDICTIONS, evaluate_split
from slm_tf.train.artifacts import CONFIG_FILE, METRICS_FILE, load_run
from slm_tf.train.config import TrainConfig
from slm_tf.trust.evaluate import run_trust
from slm_tf.trust.serving import TRUST_KEY


def refit_abstention(run_dir: str, method: str, target: str) -> Dict:
    """Chooses ``method``'s threshold on the run's validation split for ``target``; returns
    the new trust block (also written into the run)."""
    run = load_run(run_dir)
    if run.task != "classification":
        raise UserError(f"{run_dir}: abstention is for classifiers; this run's task is "
                        f"{run.task!r}. Fix: pass a classification run.")
    dcfg = from_dict(DataConfig, run.config["data"])
    data = prepare_data(dcfg, required_splits=("validation", "test"))
    val, test = (evaluate_split(run.model, data, split, run.tokenizer, dcfg, run.label_names)
                 for split in ("validation", "test"))
    tcfg = dataclasses.replace(from_dict(TrainConfig, run.config.get("train", {})),
                               abstain_method=method, abstain_target=target)
    trust = run_trust(*val[PREDICTIONS][:2], *test[PREDICTIONS][:2], run.label_names,
                      tcfg, run_dir)
    metrics_path = os.path.join(run_dir, METRICS_FILE)
    metrics = read_json(metrics_path)
    metrics[TRUST_KEY] = trust
    config = run.config
    config.setdefault("train", {}).update(abstain_method=method, abstain_target=target)
    write_json(os.path.join(run_dir, CONFIG_FILE), config)
    write_json(metrics_path, metrics)  # last: metrics.json marks the run complete
    return trust
