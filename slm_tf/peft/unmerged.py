"""A finished LoRA/BitFit run's model as it was before merging (base + ``adapter.safetensors``)
and how far the merged ``model.keras`` is from it on a split of the run's data.

A run saves only the merged model; export and benchmark compare every exported file with that
merged model. This closes the chain to the issue's reference, the unmerged Keras model: the
base is rebuilt independently of the merged file (a fresh build, the run's
``--init_checkpoint`` / ``--init_from`` weights) and the adapter is loaded onto it unmerged.
"""
import dataclasses
import os
from typing import Dict

import numpy as np
import tf_keras as keras

from slm_tf.config import from_dict
from slm_tf.data.config import SPLITS, DataConfig
from slm_tf.errors import UserError
from slm_tf.export.parity import agreement
from slm_tf.models.config import ModelConfig
from slm_tf.peft import lora
from slm_tf.peft.config import FineTuneConfig
from slm_tf.train.config import TrainConfig


def unmerged_model(run, data) -> keras.Model:
    """``run``'s architecture built afresh, started from the weights its training started from
    and carrying its adapter unmerged (``LoRADense`` layers); ``data`` is the run's
    prepared data (for the class count)."""
    path = os.path.join(run.run_dir, lora.ADAPTER_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{run.run_dir}: no {lora.ADAPTER_FILE}. Fix: pass a run trained with "
                        "--lora_rank or --bitfit (only those save an adapter).")
    model_cfg = from_dict(ModelConfig, run.config.get("model", {}))
    finetune = from_dict(FineTuneConfig, run.config.get("finetune", {}))
    if not (model_cfg.init_checkpoint or finetune.init_from):
        raise UserError(f"{run.run_dir} started from random weights (no --init_checkpoint or "
                        "--init_from), so its base cannot be rebuilt to load the adapter onto. "
                        "Fix: compare runs that fine-tune a pretrained base.")
    from slm_tf.tasks import get_task
    task = get_task(run.task)
    dcfg = from_dict(DataConfig, run.config["data"])
    model = task.build_model(model_cfg, run.tokenizer, data, dcfg)
    if model_cfg.init_checkpoint:
        from slm_tf.models.bert import load_checkpoint_weights
        load_checkpoint_weights(model, model_cfg.init_checkpoint)
    if finetune.init_from:
        from slm_tf.peft.finetune import load_init_from
        load_init_from(model, finetune.init_from)
    seed = from_dict(TrainConfig, run.config.get("train", {})).seed
    lora.load_adapter(model, path, seed)  # refuses a base other than the one trained on
    return model


def merge_parity(run_dir: str, split: str = "test", batch_size: int = 128) -> Dict:
    """Logits of the merged ``model.keras`` against the unmerged model on ``split``: largest
    absolute difference, argmax agreement, and both accuracies."""
    from slm_tf.tasks import get_task
    from slm_tf.train.artifacts import load_run
    if split not in SPLITS:
        raise UserError(f"--split={split}: use one of {', '.join(SPLITS)}.")
    run = load_run(run_dir)
    data = get_task(run.task).prepare_data(from_dict(DataConfig, run.config["data"]))
    ids = run.tokenizer.encode(data.texts(split), run.max_seq_len)
    labels = np.asarray(data.labels(split))
    merged = run.model.predict(ids, batch_size=batch_size, verbose=0)
    unmerged_net = unmerged_model(run, data)
    unmerged = unmerged_net.predict(ids, batch_size=batch_size, verbose=0)
    adapted = sum(isinstance(layer, lora.LoRADense)
                  for layer in unmerged_net._flatten_layers(include_self=False, recursive=True))
    return {"run_dir": run_dir, "split": split, "rows": int(len(ids)),
            "lora_layers": int(adapted),
            "max_abs_logit_diff": float(np.max(np.abs(merged - unmerged))),
            "argmax_agreement": agreement(unmerged, merged),
            "accuracy_merged": float(np.mean(np.argmax(merged, 1) == labels)),
            "accuracy_unmerged": float(np.mean(np.argmax(unmerged, 1) == labels)),
            "adapter": dataclasses.asdict(lora.read_adapter(
                os.path.join(run_dir, lora.ADAPTER_FILE))[0])}
