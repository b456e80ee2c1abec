"""Supervised training of a zoo model: data -> tokenizer -> model -> fit -> evaluate -> save."""
import dataclasses
import math
import os
import shutil
import time
from typing import Dict, Optional

import tensorflow as tf
import tf_keras as keras
from absl import logging

from slm_tf.config import field, fraction, non_negative, positive, to_dict
from slm_tf.data.config import DataConfig
from slm_tf.data.pipeline import PreparedData, make_dataset, prepare_data
from slm_tf.errors import UserError
from slm_tf.io_utils import read_json, write_json
from slm_tf.models import ModelConfig, build_model, describe
from slm_tf.models.bert import config_from_checkpoint, load_checkpoint_weights
from slm_tf.tokenizers import Tokenizer, TokenizerConfig, build_tokenizer, load_tokenizer
from slm_tf.train import artifacts
from slm_tf.train.callbacks import BestWeights, LearningRateLogger, ResumeTracker, Throughput
from slm_tf.train.metrics import classification_report, predict_logits
from slm_tf.train.optim import make_optimizer
from slm_tf.train.strategies import make_strategy
from slm_tf.train.tensorboard import write_evaluation, write_hparams


@dataclasses.dataclass
class TrainConfig:
    output_dir: str = field("", "Run directory for the model, tokenizer, config, metrics, "
                            "TensorBoard logs and checkpoints.", validate=bool,
                            rule="set (e.g. --output_dir=runs/x)")
    epochs: int = field(10, "Maximum training epochs.", validate=positive, rule="> 0")
    learning_rate: float = field(2e-3, "Peak learning rate of AdamW.", validate=positive,
                                 rule="> 0")
    weight_decay: float = field(0.01, "AdamW decoupled weight decay.", validate=non_negative,
                                rule=">= 0")
    warmup_fraction: float = field(0.1, "Share of steps spent warming the learning rate up.",
                                   validate=fraction, rule="in [0, 1)")
    decay: str = field("linear", "Learning-rate decay after warmup.",
                       choices=("linear", "cosine", "constant"))
    label_smoothing: float = field(0.0, "Label smoothing of the cross-entropy.",
                                   validate=fraction, rule="in [0, 1)")
    early_stopping_patience: int = field(3, "Stop after this many epochs without a better "
                                         "validation accuracy (0 = never).",
                                         validate=non_negative, rule=">= 0")
    seed: int = field(42, "Seed of weights, dropout and shuffling (same seed, same metrics).")
    strategy: str = field("default", "tf.distribute strategy.", choices=("default", "mirrored",
                                                                         "multi_worker"))
    checkpoint_every_steps: int = field(0, "Also checkpoint every N training steps, so a crash "
                                        "mid-epoch loses at most N steps (0 = each epoch only).",
                                        validate=non_negative, rule=">= 0")
    deterministic: bool = field(True, "Use deterministic TF kernels (reproducible metrics).")
    overwrite: bool = field(False, "Retrain into an --output_dir that holds a complete run: its "
                            "model, metrics, export/, eval/, logs/ and checkpoints/ are removed "
                            "first. Without it a complete run is refused (an incomplete one "
                            "always resumes).")


@dataclasses.dataclass
class ExperimentConfig:
    """Everything one training run needs; ``config.json`` is this, serialized."""
    data: DataConfig
    tokenizer: TokenizerConfig
    model: ModelConfig
    train: TrainConfig

    def to_dict(self) -> Dict:
        return {k: to_dict(getattr(self, k)) for k in ("data", "tokenizer", "model", "train")}


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seeds Python, numpy and TF; optionally forces deterministic kernels."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def prepare_tokenizer(cfg: TokenizerConfig, data: PreparedData, run_dir: str,
                      resuming: bool) -> Tokenizer:
    """Reuses the run's saved tokenizer when resuming (the vocabulary must not change under a
    checkpoint), otherwise builds and saves a new one."""
    directory = os.path.join(run_dir, artifacts.TOKENIZER_DIR)
    if resuming and os.path.exists(os.path.join(directory, "tokenizer.json")):
        logging.info("reusing the tokenizer saved in %s", directory)
        return load_tokenizer(directory)
    tokenizer = build_tokenizer(cfg, data.texts("train"))
    tokenizer.save(directory)
    logging.info("%s tokenizer with %d tokens saved in %s", cfg.tokenizer, tokenizer.vocab_size,
                 directory)
    return tokenizer


def evaluate_split(model, data: PreparedData, split: str, tokenizer: Tokenizer,
                   data_cfg: DataConfig, label_names, log_dir: Optional[str] = None,
                   step: int = 0, label_remap=None) -> Dict:
    """Metrics of ``model`` on one split; optionally also written to TensorBoard."""
    ds = make_dataset(data, split, tokenizer, data_cfg, training=False, label_remap=label_remap)
    start = time.perf_counter()
    logits, labels = predict_logits(model, ds)
    seconds = time.perf_counter() - start
    report = classification_report(labels, logits, label_names)
    report["eval_examples_per_s"] = len(labels) / seconds if seconds else 0.0
    if log_dir:
        write_evaluation(log_dir, step, split, report, data.texts(split, label_remap), labels, logits,
                         label_names)
    return report


def from_checkpoint(exp: ExperimentConfig) -> ExperimentConfig:
    """The experiment with the architecture and vocabulary of ``model.init_checkpoint``."""
    model = config_from_checkpoint(exp.model.init_checkpoint, exp.model, exp.data.max_seq_len)
    ckpt = model.init_checkpoint  # resolved to a directory
    lower = True
    tok_cfg_path = os.path.join(ckpt, "tokenizer_config.json")
    if os.path.exists(tok_cfg_path):
        lower = bool(read_json(tok_cfg_path).get("do_lower_case", True))
    tokenizer = dataclasses.replace(exp.tokenizer, tokenizer="wordpiece",
                                    vocab_file=os.path.join(ckpt, "vocab.txt"), lowercase=lower,
                                    strip_accents=lower)
    return dataclasses.replace(exp, model=model, tokenizer=tokenizer)


@dataclasses.dataclass
class RunContext:
    """Where a run writes, and whether it resumes an interrupted one."""
    run_dir: str
    resuming: bool

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.run_dir, artifacts.CHECKPOINT_DIR)

    @property
    def backup_dir(self) -> str:
        return os.path.join(self.checkpoint_dir, "backup")

    @property
    def log_dir(self) -> str:
        return os.path.join(self.run_dir, artifacts.LOG_DIR)


def check_output_dir(run_dir: str, overwrite: bool) -> None:
    """Refuses a complete run in ``run_dir``, or with ``overwrite`` clears it for retraining."""
    if not artifacts.is_complete(run_dir):
        return
    if not overwrite:
        raise UserError(f"{run_dir} already holds a complete run ({artifacts.METRICS_FILE} is "
                        "there). Fix: choose another --output_dir, or pass --overwrite to "
                        "retrain it (its model, export/, eval/, logs/ and checkpoints/ are "
                        "removed).")
    logging.info("--overwrite: clearing the complete run in %s", run_dir)
    artifacts.clear_derived(run_dir)


def start_run(tcfg: TrainConfig) -> RunContext:
    """Creates the run directory, seeds everything, and detects a resumable checkpoint.

    A complete run is refused unless ``tcfg.overwrite``; an incomplete one without a
    checkpoint to resume from has its stale checkpoint state cleared.
    """
    run_dir = os.path.abspath(tcfg.output_dir)
    check_output_dir(run_dir, tcfg.overwrite)
    os.makedirs(run_dir, exist_ok=True)
    seed_everything(tcfg.seed, tcfg.deterministic)
    ctx = RunContext(run_dir, _has_files(os.path.join(run_dir, artifacts.CHECKPOINT_DIR,
                                                      "backup")))
    if not ctx.resuming and os.path.isdir(ctx.checkpoint_dir):
        shutil.rmtree(ctx.checkpoint_dir)
    return ctx


@dataclasses.dataclass
class FitResult:
    epochs_run: int
    train_seconds: float
    examples_per_s: float
    resumed_at_epoch: int
    best_epoch: int


def fit(model: keras.Model, train_ds, val_ds, tcfg: TrainConfig, ctx: RunContext,
        steps_per_epoch: int, batch_size: int, keep=None, extra_callbacks=(),
        select_from_epoch: int = 0) -> FitResult:
    """``model.fit`` with checkpoint/resume, best-weights + early stopping, LR and throughput
    logging and TensorBoard; afterwards ``keep`` (default ``model``) holds the best weights
    among the epochs from ``select_from_epoch`` on."""
    keep = keep or model
    best = BestWeights(ctx.checkpoint_dir, "val_accuracy", tcfg.early_stopping_patience,
                       target=keep, select_from_epoch=select_from_epoch)
    throughput, resume = Throughput(batch_size), ResumeTracker()
    callbacks = [
        keras.callbacks.BackupAndRestore(ctx.backup_dir,
                                         save_freq=tcfg.checkpoint_every_steps or "epoch"),
        resume, LearningRateLogger(), best, throughput,
        *extra_callbacks,
        keras.callbacks.TensorBoard(ctx.log_dir, update_freq=max(1, steps_per_epoch // 10)),
    ]
    if train_ds.cardinality() < 0:
        # Keras needs an epoch's length to resume in the middle of one (step checkpoints);
        # datasets read from files (cached teacher outputs) do not know theirs.
        train_ds = train_ds.apply(tf.data.experimental.assert_cardinality(steps_per_epoch))
    start = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=tcfg.epochs,
                        callbacks=callbacks, verbose=_verbosity())
    seconds = time.perf_counter() - start
    best.restore_best(keep)
    return FitResult(len(history.history.get("loss", [])), seconds, throughput.examples_per_s,
                     resume.start_epoch or 0, best.state["best_epoch"] + 1)


def finish_run(ctx: RunContext, config: Dict, model, tokenizer: Tokenizer, data: PreparedData,
               data_cfg: DataConfig, result: FitResult, extra: Optional[Dict] = None) -> Dict:
    """Evaluates ``model`` on validation and test, writes every artifact, returns the metrics.

    ``metrics.json`` is written last: its presence marks the run complete.
    """
    info = describe(model, data_cfg.max_seq_len)
    val = evaluate_split(model, data, "validation", tokenizer, data_cfg, data.label_names)
    test = evaluate_split(model, data, "test", tokenizer, data_cfg, data.label_names,
                          log_dir=os.path.join(ctx.log_dir, "eval"))
    metrics = {
        **{k: test[k] for k in ("accuracy", "macro_f1", "macro_precision", "macro_recall", "ece",
                                "num_examples", "eval_examples_per_s")},
        **info,
        "train_examples_per_s": result.examples_per_s,
        "train_seconds": result.train_seconds,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "resumed_at_epoch": result.resumed_at_epoch,
        "validation": {k: val[k] for k in ("accuracy", "macro_f1")},
        **(extra or {}),
        "per_class": test["per_class"],
        "confusion_matrix": test["confusion_matrix"],
        "data": data.summary(),
        "tokenizer": {"type": tokenizer.kind, "vocab_size": tokenizer.vocab_size},
    }
    write_hparams(os.path.join(ctx.log_dir, "hparams"),
                  {f"{section}.{k}": v for section, d in config.items() if isinstance(d, dict)
                   for k, v in d.items()
                   if section != "data" or k in ("data", "max_seq_len", "batch_size")},
                  {"test/accuracy": metrics["accuracy"], "test/macro_f1": metrics["macro_f1"]})
    artifacts.save_model(ctx.run_dir, model, tokenizer, data_cfg.max_seq_len)
    artifacts.save_labels(ctx.run_dir, data.label_names)
    write_json(os.path.join(ctx.run_dir, artifacts.CONFIG_FILE), config)
    write_json(os.path.join(ctx.run_dir, artifacts.METRICS_FILE), metrics)
    return metrics


def train(exp: ExperimentConfig) -> Dict:
    """Trains, evaluates on validation and test, and writes a complete run directory.

    Rerunning the same command after a crash resumes from the last checkpoint.
    """
    tcfg, dcfg = exp.train, exp.data
    ctx = start_run(tcfg)
    data = prepare_data(dcfg)
    if exp.model.init_checkpoint:
        exp = from_checkpoint(exp)
    tokenizer = prepare_tokenizer(exp.tokenizer, data, ctx.run_dir, ctx.resuming)
    steps_per_epoch = math.ceil(len(data.splits.train) / dcfg.batch_size)
    total_steps = steps_per_epoch * tcfg.epochs

    with make_strategy(tcfg.strategy).scope():
        model = build_model(exp.model, tokenizer.vocab_size, data.num_classes, dcfg.max_seq_len)
        if exp.model.init_checkpoint:
            n = load_checkpoint_weights(model, exp.model.init_checkpoint)
            logging.info("loaded %d tensors from %s", n, exp.model.init_checkpoint)
        compile_supervised(model, tcfg, total_steps)
    logging.info("%s: %s", exp.model.model, describe(model, dcfg.max_seq_len))

    train_ds, val_ds = supervised_datasets(data, tokenizer, dcfg, tcfg)
    result = fit(model, train_ds, val_ds, tcfg, ctx, steps_per_epoch, dcfg.batch_size)
    return finish_run(ctx, exp.to_dict(), model, tokenizer, data, dcfg, result)


def supervised_datasets(data: PreparedData, tokenizer: Tokenizer, dcfg: DataConfig,
                        tcfg: TrainConfig):
    """``(train, validation)`` batches of ids and labels (one-hot with label smoothing)."""
    train_ds = make_dataset(data, "train", tokenizer, dcfg, training=True, seed=tcfg.seed)
    val_ds = make_dataset(data, "validation", tokenizer, dcfg, training=False)
    if tcfg.label_smoothing:
        one_hot = lambda x, y: (x, tf.one_hot(y, data.num_classes))
        train_ds, val_ds = train_ds.map(one_hot), val_ds.map(one_hot)
    return train_ds, val_ds


def compile_supervised(model: keras.Model, tcfg: TrainConfig, total_steps: int) -> None:
    """Compiles ``model`` for hard-label training with the run's optimizer and loss."""
    model.compile(optimizer=optimizer_for(tcfg, total_steps),
                  loss=_loss(tcfg.label_smoothing), metrics=["accuracy"])


def optimizer_for(tcfg: TrainConfig, total_steps: int):
    """AdamW with the run's schedule over ``total_steps``."""
    return make_optimizer(tcfg.learning_rate, tcfg.weight_decay,
                          int(total_steps * tcfg.warmup_fraction), total_steps, tcfg.decay)


def _has_files(directory: str) -> bool:
    return os.path.isdir(directory) and any(files for _, _, files in os.walk(directory))


def _loss(label_smoothing: float):
    if label_smoothing:
        return keras.losses.CategoricalCrossentropy(from_logits=True,
                                                    label_smoothing=label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _verbosity() -> int:
    # A live progress bar on a terminal; one line per epoch in logs and CI.
    import sys
    return 1 if sys.stdout.isatty() else 2
