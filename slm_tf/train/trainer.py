"""The run framework: data -> tokenizer -> model -> fit -> evaluate -> save, for any task.

What is task-shaped (how data is read, what a batch is, the loss, the metrics) comes from the
run's :class:`slm_tf.tasks.Task`; this module owns what every task shares: the run directory,
resume after a crash, strategies, best-epoch selection, TensorBoard and the artifacts.
"""
import dataclasses
import os
import shutil
import time
from typing import Callable, Dict, Optional, TypeVar

import tensorflow as tf
import tf_keras as keras
from absl import logging

from slm_tf.config import from_dict
from slm_tf.data.config import DataConfig
from slm_tf.data.unlabeled import unlabeled_texts
from slm_tf.errors import UserError
from slm_tf.io_utils import read_json, require_output_dir, write_json
from slm_tf.models import describe
from slm_tf.train.config import ExperimentConfig, TrainConfig  # noqa: F401  (re-exported)
from slm_tf.models.bert import config_from_checkpoint, load_checkpoint_weights
from slm_tf.models.embedding_init import start_embeddings
from slm_tf.tokenizers import Tokenizer, TokenizerConfig, build_tokenizer, load_tokenizer
from slm_tf.train import artifacts
from slm_tf.train.baseline import warn_if_below
from slm_tf.train.callbacks import (TIME_SPENT, BestWeights, LearningRateLogger, ResumeTracker,
                                    Throughput, TimeBudget)
from slm_tf.tasks import DEFAULT_TASK, Task, get_task
from slm_tf.train.strategies import make_strategy, wait_for_all_workers, worker_role
from slm_tf.train.tensorboard import write_hparams
from slm_tf.trust import dp as dp_sgd
from slm_tf.peft import finetune, frozen_encoder
from slm_tf.trust.serving import TRUST_KEY, ServingHead

T = TypeVar("T")


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seeds Python, numpy and TF; optionally forces deterministic kernels."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


class WholeModelTraining:
    """How ``train`` runs by default: the whole model (wrapped for DP-SGD when ``--dp_*`` ask
    for it) on the task's batches, scored by the model itself. The other plan is
    :class:`slm_tf.peft.frozen_encoder.HeadTraining`."""

    def __init__(self, model: keras.Model, exp: "ExperimentConfig"):
        self.exp, self.keep = exp, model
        self.trainable = dp_sgd.wrap(model, exp.dp, exp.train.seed)

    def datasets(self, task: Task, data, tokenizer):
        """``(train, validation)`` batches from the task's input pipeline."""
        return task.datasets(data, tokenizer, self.exp.data, self.exp.train)

    def scorer(self):
        """None: the run is scored by running the model."""
        return None


def prepare_tokenizer(cfg: TokenizerConfig, data, run_dir: str, resuming: bool,
                      task: Optional[Task] = None) -> Tokenizer:
    """Reuses the run's saved tokenizer when resuming (the vocabulary must not change under a
    checkpoint), otherwise builds and saves a new one."""
    directory = os.path.join(run_dir, artifacts.TOKENIZER_DIR)
    if resuming and os.path.exists(os.path.join(directory, "tokenizer.json")):
        logging.info("reusing the tokenizer saved in %s", directory)
        return load_tokenizer(directory)
    tokenizer = build_tokenizer(cfg, (task or get_task(DEFAULT_TASK)).tokenizer_texts(data))
    tokenizer.save(directory)
    logging.info("%s tokenizer with %d tokens saved in %s", cfg.tokenizer, tokenizer.vocab_size,
                 directory)
    return tokenizer


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
    """Where a run writes, and whether it resumes an interrupted one.

    In a multi-worker cluster only the chief writes the run directory; every other worker
    writes into its own scratch ``run_dir`` (removed when it finishes) and shares only the
    chief's backup, from which all workers restore after a crash.
    """
    run_dir: str
    resuming: bool
    shared_dir: Optional[str] = None  # the chief's run directory, when this worker is not it
    worker_index: int = 0
    num_workers: int = 1

    @property
    def is_chief(self) -> bool:
        return self.shared_dir is None

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.run_dir, artifacts.CHECKPOINT_DIR)

    @property
    def backup_dir(self) -> str:
        # Next to this context's checkpoints (compression stages keep one each); a worker that
        # is not the chief restores from the chief's.
        if self.shared_dir:
            return os.path.join(self.shared_dir, artifacts.CHECKPOINT_DIR, "backup")
        return os.path.join(self.checkpoint_dir, "backup")

    @property
    def log_dir(self) -> str:
        return os.path.join(self.run_dir, artifacts.LOG_DIR)


def check_output_dir(run_dir: str, overwrite: bool, clear: bool = True) -> None:
    """Refuses a complete run in ``run_dir``, or with ``overwrite`` clears it for retraining
    (only when ``clear``: in a cluster the chief alone clears the shared folder)."""
    if not artifacts.is_complete(run_dir) or (overwrite and not clear):
        return
    if not overwrite:
        raise UserError(f"{run_dir} already holds a complete run ({artifacts.METRICS_FILE} is "
                        "there). Fix: choose another --output_dir, or pass --overwrite to "
                        "retrain it (its model, export/, eval/, logs/ and checkpoints/ are "
                        "removed).")
    logging.info("--overwrite: clearing the complete run in %s", run_dir)
    artifacts.clear_derived(run_dir)


def chief_first(strategy: tf.distribute.Strategy, ctx: "RunContext", work: Callable[[], T]) -> T:
    """``work()`` on the chief first, then on the other workers once it has finished (a
    barrier on each side), so files shared by the cluster (prepared data, the teacher cache)
    are written by the chief alone and the others find them ready. One worker: just ``work()``.
    """
    if not ctx.is_chief:
        wait_for_all_workers(strategy)
    out = work()
    if ctx.is_chief and ctx.num_workers > 1:
        wait_for_all_workers(strategy)
    return out


def close_run(strategy: tf.distribute.Strategy, ctx: "RunContext") -> None:
    """Returns once every worker has finished its run (the chief hosts the cluster's
    coordination service: a worker still saving when it exits loses its heartbeat), then
    removes a non-chief's scratch directory."""
    if ctx.num_workers > 1:
        wait_for_all_workers(strategy)
    if not ctx.is_chief:
        shutil.rmtree(ctx.run_dir, ignore_errors=True)


def require_default_strategy(tcfg: TrainConfig, script: str,
                             why: str = "its tfmot wrappers are rebuilt stage by stage (prune, "
                                        "strip, QAT) outside a tf.distribute scope") -> None:
    """Rejects ``--strategy`` other than default for a script that does not build its models
    inside a strategy scope (it would silently train on one device)."""
    if tcfg.strategy != "default":
        raise UserError(f"--strategy={tcfg.strategy} is not supported by {script} yet: {why}, "
                        "so it would silently train on one device. Fix: drop --strategy "
                        "(train.py and distill.py of a classifier honour mirrored and "
                        "multi_worker).")


def start_run(tcfg: TrainConfig, strategy: Optional[tf.distribute.Strategy] = None
              ) -> RunContext:
    """Creates the run directory, seeds everything, and detects a resumable checkpoint.

    A complete run is refused unless ``tcfg.overwrite``; an incomplete one without a
    checkpoint to resume from has its stale checkpoint state cleared. A worker that is not the
    chief of ``strategy``'s cluster gets a scratch directory instead (see RunContext).
    """
    require_output_dir(tcfg.output_dir)
    run_dir = os.path.abspath(tcfg.output_dir)
    is_chief, index, workers = worker_role(strategy) if strategy else (True, 0, 1)
    check_output_dir(run_dir, tcfg.overwrite, clear=is_chief)
    shared = None if is_chief else run_dir
    if shared:
        run_dir = os.path.join(shared, f".worker_{index}")
    os.makedirs(run_dir, exist_ok=True)
    seed_everything(tcfg.seed, tcfg.deterministic)
    ctx = RunContext(run_dir, False, shared, index, workers)
    ctx.resuming = _has_files(ctx.backup_dir)
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
    batches: int = 0  # training batches this process ran (this session, not resumed ones)


def fit(model: keras.Model, train_ds, val_ds, tcfg: TrainConfig, ctx: RunContext,
        steps_per_epoch: int, batch_size: int, keep=None, extra_callbacks=(),
        select_from_epoch: int = 0, task: Optional[Task] = None,
        class_weight: Optional[Dict[int, float]] = None) -> FitResult:
    """``model.fit`` with checkpoint/resume, best-weights + early stopping on the task's
    validation metric, LR and throughput logging and TensorBoard; afterwards ``keep`` (default
    ``model``) holds the best weights among the epochs from ``select_from_epoch`` on."""
    keep = keep or model
    task = task or get_task(tcfg.task)
    best = BestWeights(ctx.checkpoint_dir, task.monitor, tcfg.early_stopping_patience,
                       target=keep, select_from_epoch=select_from_epoch, mode=task.monitor_mode)
    throughput, resume = Throughput(batch_size), ResumeTracker()
    callbacks = [
        keras.callbacks.BackupAndRestore(ctx.backup_dir,
                                         save_freq=tcfg.checkpoint_every_steps or "epoch"),
        resume, LearningRateLogger(), best, throughput,
        *extra_callbacks,
        *([TimeBudget(tcfg.train_minutes, os.path.join(ctx.checkpoint_dir, TIME_SPENT))]
          if tcfg.train_minutes else []),
        keras.callbacks.TensorBoard(ctx.log_dir, update_freq=max(1, steps_per_epoch // 10)),
    ]
    # Each worker of a multi-worker cluster takes every n-th example of the same (identically
    # seeded) order: our datasets are built in memory, so there are no files to split by.
    sharding = tf.data.Options()
    sharding.experimental_distribute.auto_shard_policy = \
        tf.data.experimental.AutoShardPolicy.DATA
    train_ds, val_ds = train_ds.with_options(sharding), val_ds.with_options(sharding)
    if train_ds.cardinality() < 0:
        # Keras needs an epoch's length to resume in the middle of one (step checkpoints);
        # datasets read from files (cached teacher outputs) do not know theirs.
        train_ds = train_ds.apply(tf.data.experimental.assert_cardinality(steps_per_epoch))
    if tcfg.jit_compile:
        model.jit_compile = True
    start = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=tcfg.epochs,
                        callbacks=callbacks, verbose=_verbosity(), class_weight=class_weight)
    seconds = time.perf_counter() - start
    best.restore_best(keep)
    logging.info("worker %d of %d: %d training batches in this process, optimizer at step %d",
                 ctx.worker_index, ctx.num_workers, throughput.batches,
                 int(model.optimizer.iterations.numpy()))
    logging.info("worker %d of %d: training loss per epoch %s", ctx.worker_index,
                 ctx.num_workers, [round(float(v), 6) for v in history.history.get("loss", [])])
    return FitResult(len(history.history.get("loss", [])), seconds, throughput.examples_per_s,
                     resume.start_epoch or 0, best.state["best_epoch"] + 1, throughput.batches)


def finish_run(ctx: RunContext, config: Dict, model, tokenizer: Tokenizer, data,
               data_cfg: DataConfig, result: FitResult, extra: Optional[Dict] = None,
               task: Optional[Task] = None, scorer=None) -> Dict:
    """Evaluates ``model`` on validation and test, writes every artifact, returns the metrics.

    ``scorer``: what computes ``model``'s outputs for the evaluation, when not the model itself
    (a frozen encoder's cached outputs). ``metrics.json`` is written last: its presence marks
    the run complete.
    """
    task = task or get_task(config.get("train", {}).get("task", DEFAULT_TASK))
    info = describe(model, data_cfg.max_seq_len)
    val = task.evaluate(scorer or model, data, "validation", tokenizer, data_cfg)
    test = task.evaluate(scorer or model, data, "test", tokenizer, data_cfg,
                         log_dir=os.path.join(ctx.log_dir, "eval"))
    head = task.run_metrics(test, val)
    trust = task.trust(val, test, from_dict(TrainConfig, config.get("train", {})), ctx.run_dir)
    baseline = task.baseline(data) if config.get("train", {}).get("baseline", True) else None
    if baseline is not None:
        baseline["warning"] = warn_if_below(
            f"{os.path.basename(ctx.run_dir)} ({config.get('model', {}).get('model', 'model')})",
            head[task.headline], baseline, task.higher_is_better, task.headline)
    metrics = {
        "task": task.name,
        **head,
        **({"baseline": baseline} if baseline is not None else {}),
        **info,
        "train_examples_per_s": result.examples_per_s,
        "train_seconds": result.train_seconds,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "resumed_at_epoch": result.resumed_at_epoch,
        "workers": {"count": ctx.num_workers, "index": ctx.worker_index,
                    "chief": ctx.is_chief, "train_batches": result.batches},
        **(extra or {}),
        **({TRUST_KEY: trust} if trust else {}),
        "data": data.summary(),
        "tokenizer": {"type": tokenizer.kind, "vocab_size": tokenizer.vocab_size},
    }
    write_hparams(os.path.join(ctx.log_dir, "hparams"),
                  {f"{section}.{k}": v for section, d in config.items() if isinstance(d, dict)
                   for k, v in d.items()
                   if section != "data" or k in ("data", "max_seq_len", "batch_size")},
                  {f"test/{k}": metrics[k] for k in task.summary_metrics})
    artifacts.save_model(ctx.run_dir, model, tokenizer, data_cfg.max_seq_len,
                         ServingHead(trust["temperature"], trust["rule"]) if trust
                         else ServingHead())
    task.save_artifacts(ctx.run_dir, data)
    write_json(os.path.join(ctx.run_dir, artifacts.CONFIG_FILE), config)
    write_json(os.path.join(ctx.run_dir, artifacts.METRICS_FILE), metrics)
    return metrics


def train(exp: ExperimentConfig) -> Dict:
    """Trains, evaluates on validation and test, and writes a complete run directory.

    Rerunning the same command after a crash resumes from the last checkpoint.
    """
    tcfg, dcfg = exp.train, exp.data
    # First: a multi-worker strategy configures collective ops, which must happen before any
    # other TensorFlow op initialises the runtime.
    strategy = make_strategy(tcfg.strategy)
    task = get_task(tcfg.task)
    ctx = start_run(tcfg, strategy)
    # On a shared file system the workers would race to prepare the same tfds data dir: the
    # chief prepares it first, the others then find it ready (or prepare their own copy).
    data = chief_first(strategy, ctx, lambda: task.prepare_data(dcfg))
    extra = {}
    if exp.pretrain.unlabeled_data:  # pretraining text besides the training split
        texts = unlabeled_texts(exp.pretrain, dcfg)
        data = task.with_unlabeled(data, texts)
        extra["pretrain"] = {"unlabeled_data": exp.pretrain.unlabeled_data,
                             "unlabeled_texts": len(texts)}
        logging.info("pretraining on %d unlabeled texts from %s besides the training split",
                     len(texts), exp.pretrain.unlabeled_data)
    if exp.model.init_checkpoint:
        exp = from_checkpoint(exp)
    data = finetune.prepare(exp, data, ctx.run_dir)  # --train_examples_per_class
    if exp.finetune.init_from:  # the pretrained run's tokenizer, carried over
        tokenizer = finetune.carry_tokenizer(exp, ctx.run_dir)
    else:
        tokenizer = prepare_tokenizer(exp.tokenizer, data, ctx.run_dir, ctx.resuming, task)
    steps_per_epoch = task.steps_per_epoch(data, dcfg.batch_size)
    total_steps = steps_per_epoch * tcfg.epochs

    with strategy.scope():
        model = task.build_model(exp.model, tokenizer, data, dcfg)
        if exp.model.init_checkpoint:
            n = load_checkpoint_weights(model, exp.model.init_checkpoint)
            logging.info("loaded %d tensors from %s", n, exp.model.init_checkpoint)
            note = task.after_checkpoint(model)
            if note:
                logging.info(note)
        if exp.model.init_embeddings_from or exp.model.freeze_embeddings:
            logging.info("embeddings: %s", start_embeddings(model, tokenizer.vocab, exp.model))
        adapted = finetune.adapt(model, exp)  # --init_from, LoRA, BitFit, frozen layers
        # --frozen_encoder: the head alone trains, on cached encoder outputs.
        plan = (frozen_encoder.HeadTraining if exp.finetune.frozen_encoder
                else WholeModelTraining)(model, exp)
        task.compile(plan.trainable, tcfg, total_steps)
    logging.info("%s (%s): %s", exp.model.model, task.name, describe(model, dcfg.max_seq_len))

    train_ds, val_ds = plan.datasets(task, data, tokenizer)
    result = fit(plan.trainable, train_ds, val_ds, tcfg, ctx, steps_per_epoch, dcfg.batch_size,
                 keep=plan.keep, task=task,
                 class_weight=task.class_weight(data, tcfg.class_weights))
    if exp.dp.enabled:
        extra["dp"] = dp_sgd.privacy_report(exp.dp, len(data.splits.train), dcfg.batch_size,
                                            int(plan.trainable.optimizer.iterations.numpy()))
    extra.update(finetune.finish(model, exp, adapted, ctx.run_dir, ctx.is_chief))
    # Every worker evaluates and saves (saving may run collective ops); a non-chief does it
    # into its scratch directory, which goes once it is done.
    metrics = finish_run(ctx, exp.to_dict(), model, tokenizer, data, dcfg, result, extra,
                         task=task, scorer=plan.scorer())
    close_run(strategy, ctx)
    return metrics


def _has_files(directory: str) -> bool:
    return os.path.isdir(directory) and any(files for _, _, files in os.walk(directory))


def _verbosity() -> int:
    # A live progress bar on a terminal; one line per epoch in logs and CI.
    import sys
    return 1 if sys.stdout.isatty() else 2
