"""The trainer's fine-tuning hooks: few-shot subsets, ``--init_from`` a pretrained run, and
LoRA/BitFit/freezing with the adapter saved alone and merged before the run is saved."""
import dataclasses
import os
from typing import Dict, List

import numpy as np
import tf_keras as keras
from absl import logging

from slm_tf.errors import UserError
from slm_tf.io_utils import read_json, write_text
from slm_tf.peft import lora
from slm_tf.peft.config import check

UNLABELED_FILE = "unlabeled_train.txt"
# Model flags a fine-tuned run does not take from its --init_from run: dropout is a training
# choice, and the run's own weights replace whatever it started from (a domain-adapted MiniLM
# must not load the pip checkpoint, and its tokenizer, first).
_NOT_INHERITED = ("dropout", "init_checkpoint", "init_embeddings_from")
# Layers a pretraining run has that a fine-tuned model replaces (its own task head).
_HEADS = ("logits", "crf")


def few_shot_indices(labels: List[int], k: int, seed: int) -> List[int]:
    """Indices of ``k`` examples per class (all of a smaller class), drawn with ``seed``, in
    dataset order."""
    rng = np.random.RandomState(seed)
    labels = np.asarray(labels)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        keep += rng.permutation(members)[:k].tolist()
    return sorted(keep)


def prepare(exp, data, run_dir: str):
    """``data`` with K training examples per class when ``--train_examples_per_class=K``; the
    other training texts go to ``unlabeled_train.txt`` in the run (for pretraining or KD)."""
    k = exp.finetune.train_examples_per_class
    if not k:
        return data
    if exp.train.task != "classification":
        raise UserError("--train_examples_per_class needs --task=classification (K labelled "
                        "texts per class).")
    from slm_tf.data import tfds_builders
    from slm_tf.data.pipeline import PreparedData, _safe
    from slm_tf.data.sources import SPLITS
    keep = set(few_shot_indices(data.labels("train"), k, exp.train.seed))
    train = data.splits.train
    splits = dataclasses.replace(data.splits, train=[ex for i, ex in enumerate(train) if i in keep])
    write_text(os.path.join(run_dir, UNLABELED_FILE),
               "".join(t.replace("\n", " ") + "\n" for t in held_out_texts(exp, data)))
    fingerprint = f"{data.fingerprint}-k{k}s{exp.train.seed}"
    builder = tfds_builders.LocalTextClassification(
        config_name=f"{_safe(splits.name)}-{fingerprint}", label_names=splits.label_names,
        description=f"{splits.name}, {k} training examples per class (seed {exp.train.seed})",
        citation=splits.citation, data_dir=exp.data.data_dir,
        splits={s: splits.split(s) for s in SPLITS})
    tfds_builders.prepare(builder)
    logging.info("few-shot: %d of %d training examples (%d per class, seed %d); the rest in %s",
                 len(splits.train), len(train), k, exp.train.seed, UNLABELED_FILE)
    return PreparedData(data.name, fingerprint, data.label_names, splits, builder)


def held_out_texts(exp, data) -> List[str]:
    """The training texts of the full ``data`` that ``--train_examples_per_class`` leaves
    unlabelled (none without it), in dataset order: few-shot distillation's extra transfer set."""
    k = exp.finetune.train_examples_per_class
    if not k:
        return []
    keep = set(few_shot_indices(data.labels("train"), k, exp.train.seed))
    return [t for i, t in enumerate(data.texts("train")) if i not in keep]


def inherit_config(exp, given) -> List[str]:
    """Takes the ``--init_from`` run's architecture and sequence length for every model flag
    (and ``max_seq_len``) not in ``given``, so the weights fit; returns the names taken."""
    from slm_tf.models.config import ModelConfig
    path = os.path.join(exp.finetune.init_from, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"--init_from={exp.finetune.init_from}: no config.json there. Fix: "
                        "point it at a finished run directory (e.g. from scripts/pretrain.py).")
    theirs = read_json(path)
    taken = []
    for f in dataclasses.fields(ModelConfig):
        if (f.name not in given and f.name in theirs.get("model", {})
                and f.name not in _NOT_INHERITED):
            setattr(exp.model, f.name, theirs["model"][f.name])
            taken.append(f.name)
    if "max_seq_len" not in given and "max_seq_len" in theirs.get("data", {}):
        exp.data.max_seq_len = theirs["data"]["max_seq_len"]
        taken.append("max_seq_len")
    return taken


def carry_tokenizer(exp, run_dir: str):
    """The ``--init_from`` run's tokenizer, saved into this run; refuses a different one asked
    for on the command line."""
    from slm_tf.tokenizers import load_tokenizer
    from slm_tf.train import artifacts
    source = exp.finetune.init_from
    tokenizer = load_tokenizer(os.path.join(source, artifacts.TOKENIZER_DIR))
    wanted = exp.tokenizer
    if wanted.vocab_file or wanted.tokenizer != tokenizer.kind:
        raise UserError(f"--init_from={source} was pretrained with its own {tokenizer.kind} "
                        f"tokenizer ({tokenizer.vocab_size} tokens), but this run asks for "
                        f"--tokenizer={wanted.tokenizer}"
                        f"{' --vocab_file=' + wanted.vocab_file if wanted.vocab_file else ''}. "
                        "Fix: drop the tokenizer flags (the pretrained run's tokenizer is "
                        "carried over), or pretrain again with the tokenizer you want.")
    tokenizer.save(os.path.join(run_dir, artifacts.TOKENIZER_DIR))
    return tokenizer


def load_init_from(model: keras.Model, source: str) -> Dict:
    """Copies every weight of ``source``'s saved model whose path (layer/sublayer/name) this
    model has too, except task heads; refuses a shape mismatch. Returns what it loaded."""
    from slm_tf.train.artifacts import load_run
    src = load_run(source).model
    theirs = dict(_paths(src))
    loaded, missing = [], []
    for path, var in _paths(model):
        if path.split("/")[0] in _HEADS:
            continue
        if path not in theirs:
            missing.append(path)
            continue
        if tuple(theirs[path].shape) != tuple(var.shape):
            raise UserError(f"--init_from={source}: tensor {path} has shape "
                            f"{tuple(theirs[path].shape)} there and {tuple(var.shape)} here. "
                            "Fix: build this model with the pretrained run's sizes (--model, "
                            "--hidden_dim, --num_layers, --ff_dim, --max_seq_len ...) or "
                            "pretrain again with these.")
        var.assign(theirs[path])
        loaded.append(path)
    if not loaded:
        raise UserError(f"--init_from={source}: none of its tensors is in this {model.name} "
                        "model. Fix: use the same --model as the pretraining run.")
    logging.info("--init_from: loaded %d tensors from %s; %d stay freshly initialised: %s",
                 len(loaded), source, len(missing), missing[:6])
    return {"init_from": source, "loaded_tensors": len(loaded), "not_loaded": missing}


def _paths(model: keras.Model):
    by_id = lora.variable_paths(model)
    return [(by_id[id(v)], v) for v in model.weights]


def adapt(model: keras.Model, exp) -> Dict:
    """Before compile: loads ``--init_from`` and applies LoRA/BitFit/freezing; returns what
    :func:`finish` reports."""
    cfg = exp.finetune
    report = load_init_from(model, cfg.init_from) if cfg.init_from else {}
    if cfg.peft:
        check(cfg, exp.model.model)
        report["lora_paths"] = lora.apply(model, cfg, exp.train.seed)
    report["params"] = lora.parameter_report(model)
    logging.info("trainable parameters: %s", report["params"])
    return report


def finish(model: keras.Model, exp, report: Dict, run_dir: str, is_chief: bool) -> Dict:
    """After fit: saves the adapter alone, merges it into the model (which is then saved and
    exported as a plain zoo model) and returns the ``metrics.json`` entries."""
    report = dict(report)
    report["params"] = {**report["params"], "peak_memory_mb": lora.peak_memory_mb()}
    if exp.finetune.peft:
        if is_chief:
            size = lora.save_adapter(model, exp.finetune,
                                     os.path.join(run_dir, lora.ADAPTER_FILE))
            report["adapter"] = {"file": lora.ADAPTER_FILE, "bytes": size}
        lora.merge(model)
    return {"finetune": report}

