"""Compress a finished run into a new run directory: load, fine-tune through the mode's stages
(optionally still distilling from the teacher), evaluate, and write the artifacts train.py
writes plus ``compression.json`` (per-layer sparsity, accuracy and sizes before/after).

Each stage logs to ``logs/<stage>/`` (TensorBoard; pruning and clustering summaries under
``logs/<stage>/tfmot``) and checkpoints under ``checkpoints/<stage>/``. An interrupted
compression starts over.
"""
import dataclasses
import math
import os
from typing import Dict, List, Sequence

import numpy as np
import tf_keras as keras
from absl import logging

from slm_tf.compress.config import (CALIBRATION_ROWS, FINETUNE_DEFAULTS, CompressConfig,
                                    parse_m_by_n, summary)
from slm_tf.compress.modes import Stage, compress_model, mode_for
from slm_tf.compress.ner import NerCompressOps
from slm_tf.compress.report import layer_sparsity, overall_sparsity, size_report
from slm_tf.config import from_dict, parse_flagfile, to_dict, validate
from slm_tf.data.config import DataConfig
from slm_tf.data.pipeline import PreparedData, make_dataset, prepare_data
from slm_tf.data.readers import DataError
from slm_tf.distill.augment import AugmentConfig
from slm_tf.distill.distiller import Distiller
from slm_tf.distill.run import DistillConfig, DistillExperiment, check_labels, transfer_datasets
from slm_tf.errors import UserError
from slm_tf.io_utils import file_digest, require_output_dir, write_json
from slm_tf.models import ModelConfig, describe
from slm_tf.registry import Registry
from slm_tf.tokenizers import TokenizerConfig
from slm_tf.train import artifacts
from slm_tf.train.artifacts import Run, load_run, require_complete
from slm_tf.tasks.classification import (compile_supervised, evaluate_split,
                                         supervised_datasets)
from slm_tf.train.optim import optimizer_for
from slm_tf.train.trainer import (FitResult, RunContext, TrainConfig, finish_run, fit,
                                  require_default_strategy, start_run)

REPORT_FILE = artifacts.COMPRESSION_REPORT


@dataclasses.dataclass
class CompressExperiment:
    """A compression run: what to compress and how to fine-tune (``config.json`` holds both,
    next to the source run's data, tokenizer and model sections)."""
    compress: CompressConfig
    train: TrainConfig


@dataclasses.dataclass
class StageContext(RunContext):
    """A stage's own checkpoint and TensorBoard folders inside the run directory."""
    stage: str = ""

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.run_dir, artifacts.CHECKPOINT_DIR, self.stage)

    @property
    def log_dir(self) -> str:
        return os.path.join(self.run_dir, artifacts.LOG_DIR, self.stage)


@dataclasses.dataclass
class _Training:
    """How stages are trained: datasets, steps, and a factory for the model ``fit`` runs."""
    train_ds: object
    val_ds: object
    steps_per_epoch: int
    make_trainer: object  # (wrapped student, stage TrainConfig, steps) -> compiled keras.Model
    info: Dict
    task: object = None  # whose monitor picks the best epoch (None: the run's task)


def _supervised(source: Run, data: PreparedData, dcfg: DataConfig, tcfg: TrainConfig):
    train_ds, val_ds = supervised_datasets(data, source.tokenizer, dcfg, tcfg)

    def make_trainer(wrapped, stage_cfg, total_steps):
        compile_supervised(wrapped, stage_cfg, total_steps)
        return wrapped
    steps = math.ceil(len(data.splits.train) / dcfg.batch_size)
    return _Training(train_ds, val_ds, steps, make_trainer, {"teacher_dir": None})


def _distilled(ccfg: CompressConfig, source: Run, data: PreparedData, dcfg: DataConfig,
               tcfg: TrainConfig) -> _Training:
    """The source run's own transfer set (same augmentation, so the cached teacher outputs
    from distill.py are reused) and KD settings, with the teacher of ``--teacher_dir``."""
    teacher = load_run(ccfg.teacher_dir)
    check_labels(teacher, data)
    config = source.config
    kd = from_dict(DistillConfig, {**config.get("distill", {}), "teacher_dir": ccfg.teacher_dir,
                                   "cache_teacher": True, "feature_weight": 0.0,
                                   "temperature_schedule": "constant"})
    if ccfg.temperature:
        kd.temperature = ccfg.temperature
    if ccfg.alpha >= 0:
        kd.alpha = ccfg.alpha
    exp = DistillExperiment(dcfg, from_dict(TokenizerConfig, config["tokenizer"]),
                            from_dict(ModelConfig, config["model"]), tcfg, kd,
                            from_dict(AugmentConfig, config.get("augment", {})))
    train_ds, val_ds, size, counts = transfer_datasets(exp, teacher, data, source.tokenizer)

    def make_trainer(wrapped, stage_cfg, total_steps):
        distiller = Distiller(wrapped, None, kd.temperature, kd.alpha)
        distiller.compile(optimizer=optimizer_for(stage_cfg, total_steps))
        return distiller
    return _Training(train_ds, val_ds, math.ceil(size / dcfg.batch_size), make_trainer,
                     {"teacher_dir": ccfg.teacher_dir, "temperature": kd.temperature,
                      "alpha": kd.alpha, "transfer_set": counts})


def sample_ids(data: PreparedData, source: Run, dcfg: DataConfig,
               rows: int = CALIBRATION_ROWS) -> np.ndarray:
    """The first ``rows`` training examples as token ids (QAT range calibration)."""
    ds = make_dataset(data, "train", source.tokenizer, dcfg, training=False)
    out, count = [], 0
    for ids, _ in ds:
        out.append(ids.numpy())
        count += len(out[-1])
        if count >= rows:
            break
    return np.concatenate(out)[:rows]


def _evaluate(model, data, source: Run, dcfg: DataConfig) -> Dict:
    out = {}
    for split in ("validation", "test"):
        report = evaluate_split(model, data, split, source.tokenizer, dcfg, data.label_names)
        out[split] = {k: report[k] for k in ("accuracy", "macro_f1")}
    return out


class _ClassifierOps:
    """What compression needs from a classification run's task."""
    headline = "accuracy"

    @staticmethod
    def prepare(source: Run, dcfg: DataConfig, ccfg: CompressConfig):
        data = prepare_data(dcfg)
        if list(data.label_names) != list(source.label_names):
            raise DataError(f"{ccfg.run_dir} was trained on labels {source.label_names[:5]}... "
                            f"but its data {data.name} now has {data.label_names[:5]}...")
        return data

    evaluate = staticmethod(_evaluate)
    sample_ids = staticmethod(sample_ids)

    @staticmethod
    def training(ccfg, source, data, dcfg, tcfg) -> _Training:
        return (_distilled(ccfg, source, data, dcfg, tcfg) if ccfg.teacher_dir
                else _supervised(source, data, dcfg, tcfg))


class _LanguageModelOps:
    """What compression needs from a language-model run: bits per character, next-token
    fine-tuning, and token-level KD from an LM teacher (slm_tf.distill.lm)."""
    headline = "bits_per_character"

    @staticmethod
    def prepare(source: Run, dcfg: DataConfig, ccfg: CompressConfig):
        from slm_tf.tasks import get_task
        return get_task(source.task).prepare_data(dcfg)

    @staticmethod
    def evaluate(model, data, source: Run, dcfg: DataConfig) -> Dict:
        from slm_tf.tasks import get_task
        task = get_task(source.task)
        return {split: {k: task.evaluate(model, data, split, source.tokenizer, dcfg)[k]
                        for k in ("bits_per_character", "accuracy")}
                for split in ("validation", "test")}

    @staticmethod
    def sample_ids(data, source: Run, dcfg: DataConfig, rows: int = CALIBRATION_ROWS):
        from slm_tf.distill.lm import lm_blocks
        return lm_blocks(data.stream("train", source.tokenizer), dcfg.max_seq_len,
                         training=True)[0][:rows]

    @staticmethod
    def training(ccfg, source, data, dcfg, tcfg) -> _Training:
        from slm_tf.tasks import get_task
        task = get_task(source.task)
        if not ccfg.teacher_dir:
            train_ds, val_ds = task.datasets(data, source.tokenizer, dcfg, tcfg)

            def make_trainer(wrapped, stage_cfg, total_steps):
                task.compile(wrapped, stage_cfg, total_steps)
                return wrapped
            return _Training(train_ds, val_ds, task.steps_per_epoch(data, dcfg.batch_size),
                             make_trainer, {"teacher_dir": None})
        from slm_tf.distill.lm import lm_experiment, lm_transfer
        teacher = load_run(ccfg.teacher_dir)
        if teacher.task != source.task or teacher.tokenizer.vocab != source.tokenizer.vocab:
            raise UserError(f"--teacher_dir={ccfg.teacher_dir} must be a {source.task} run "
                            f"with the same tokenizer as {ccfg.run_dir} (token-level KD "
                            "compares next-token distributions over one vocabulary).")
        kd = from_dict(DistillConfig, {**source.config.get("distill", {}),
                                       "teacher_dir": ccfg.teacher_dir, "cache_teacher": True,
                                       "temperature_schedule": "constant"})
        if ccfg.temperature:
            kd.temperature = ccfg.temperature
        if ccfg.alpha >= 0:
            kd.alpha = ccfg.alpha
        exp = lm_experiment(DistillExperiment(dcfg, from_dict(TokenizerConfig,
                                                               source.config["tokenizer"]),
                                              from_dict(ModelConfig, source.config["model"]),
                                              tcfg, kd, AugmentConfig()), teacher)
        digest = file_digest(os.path.join(teacher.run_dir, artifacts.MODEL_FILE))
        train_ds, blocks = lm_transfer(exp, teacher, data, True, "train", digest)
        val_ds, _ = lm_transfer(exp, teacher, data, False, "validation", digest)

        def make_trainer(wrapped, stage_cfg, total_steps):
            distiller = Distiller(wrapped, None, kd.temperature, kd.alpha)
            distiller.compile(optimizer=optimizer_for(stage_cfg, total_steps))
            return distiller
        return _Training(train_ds, val_ds, blocks // dcfg.batch_size, make_trainer,
                         {"teacher_dir": ccfg.teacher_dir, "temperature": kd.temperature,
                          "alpha": kd.alpha, "training_blocks": blocks})


# How each task's runs are compressed, by the source run's task.
COMPRESS_TASKS: Registry[type] = Registry("compression task")
COMPRESS_TASKS.register("classification")(_ClassifierOps)
COMPRESS_TASKS.register("lm")(_LanguageModelOps)
COMPRESS_TASKS.register("ner")(NerCompressOps)


def _combine(results: List[FitResult]) -> FitResult:
    seconds = sum(r.train_seconds for r in results)
    rate = sum(r.examples_per_s * r.train_seconds for r in results) / seconds if seconds else 0.0
    return FitResult(sum(r.epochs_run for r in results), seconds, rate, 0, results[-1].best_epoch)


def _layer_rows(model, stages: List[Stage], ccfg: CompressConfig) -> List[Dict]:
    pattern = parse_m_by_n(ccfg.structured) if ccfg.structured else None
    rows = layer_sparsity(model, m_by_n=pattern, count_unique=True)
    plans = {stage.name: stage.plan for stage in stages}
    for row in rows:
        row["prune_target"] = plans.get("prune", {}).get(row["layer"])
        row["clusters"] = plans.get("cluster", {}).get(row["layer"])
        if pattern and ":" not in (row["prune_target"] or ""):
            del row[f"follows_{pattern[0]}:{pattern[1]}"]  # only m:n layers are checked
    return rows


def compress(exp: CompressExperiment) -> Dict:
    """Compresses ``exp.compress.run_dir`` into ``exp.train.output_dir``; returns the report
    (also written to ``compression.json``)."""
    ccfg, tcfg = exp.compress, exp.train
    validate(ccfg)
    validate(tcfg)
    require_default_strategy(tcfg, "compress.py")
    mode = mode_for(ccfg)
    if os.path.abspath(ccfg.run_dir) == os.path.abspath(tcfg.output_dir):
        raise UserError("--output_dir must differ from --run_dir (the source run is kept)")
    require_complete(ccfg.run_dir)
    if ccfg.teacher_dir:
        require_complete(ccfg.teacher_dir, "--teacher_dir")
    require_output_dir(tcfg.output_dir)
    source = load_run(ccfg.run_dir)
    if source.task not in COMPRESS_TASKS:
        raise UserError(f"{ccfg.run_dir} is a --task={source.task} run; compress.py compresses "
                        f"{', '.join(COMPRESS_TASKS.names())} runs so far.")
    ops = COMPRESS_TASKS.get(source.task)
    tcfg = dataclasses.replace(tcfg, task=source.task)  # the output is a run of the same task
    dcfg = from_dict(DataConfig, source.config["data"])
    data = ops.prepare(source, dcfg, ccfg)
    ctx = start_run(tcfg)
    source.tokenizer.save(os.path.join(ctx.run_dir, artifacts.TOKENIZER_DIR))
    seq_len = dcfg.max_seq_len
    logging.info("compressing %s (%s) with mode %s: %s", ccfg.run_dir, source.model.name,
                 mode.name, mode.description)

    headline = ops.headline
    before = {headline: ops.evaluate(source.model, data, source, dcfg),
              "size": size_report(source.model, seq_len, ccfg.report_tflite)}
    info = describe(source.model, seq_len)  # compression keeps shapes: params and FLOPs hold
    training = ops.training(ccfg, source, data, dcfg, tcfg)
    if ccfg.steps_per_epoch and ccfg.steps_per_epoch < training.steps_per_epoch:
        training.steps_per_epoch = ccfg.steps_per_epoch
        training.train_ds = training.train_ds.take(ccfg.steps_per_epoch)
    results: List[FitResult] = []

    def fit_stage(wrapped: keras.Model, stage: Stage, epochs: int) -> None:
        stage_cfg = dataclasses.replace(tcfg, epochs=epochs,
                                        learning_rate=stage.learning_rate(tcfg.learning_rate))
        stage_ctx = StageContext(ctx.run_dir, False, stage=stage.name)
        total = training.steps_per_epoch * epochs
        logging.info("stage %s: %d epochs of %d steps, peak learning rate %g; %s", stage.name,
                     epochs, training.steps_per_epoch, stage_cfg.learning_rate, stage.plan)
        trainer = training.make_trainer(wrapped, stage_cfg, total)
        results.append(fit(trainer, training.train_ds, training.val_ds, stage_cfg, stage_ctx,
                           training.steps_per_epoch, dcfg.batch_size, keep=wrapped,
                           extra_callbacks=stage.callbacks(os.path.join(stage_ctx.log_dir,
                                                                        "tfmot")),
                           select_from_epoch=stage.first_candidate_epoch(
                               training.steps_per_epoch, total), task=training.task))

    model, stages = compress_model(source.model, ccfg, fit_stage, training.steps_per_epoch,
                                   tcfg.epochs, sample_ids=ops.sample_ids(data, source, dcfg))
    rows = _layer_rows(model, stages, ccfg)
    after = {headline: ops.evaluate(model, data, source, dcfg),
             "size": size_report(model, seq_len, ccfg.report_tflite)}
    report = {
        "mode": mode.name, "stages": [s.name for s in stages], "headline": headline,
        "source_run": os.path.abspath(ccfg.run_dir), "settings": summary(ccfg),
        "distillation": training.info,
        f"{headline}_before": before[headline]["test"][headline],
        f"{headline}_after": after[headline]["test"][headline],
        "sparsity": overall_sparsity(rows),
        "before": before, "after": after,
        "size_note": "weights_*: every weight's raw bytes (gzip -9 for *_gzip_bytes); "
                     "tflite_*: the TFLite flatbuffer from slm_tf.export.tflite.to_tflite "
                     "(float before; float after, or int8 after QAT), raw and gzip -9",
        "stage_plans": {s.name: s.plan for s in stages},
        "layers": rows,
    }
    write_json(os.path.join(ctx.run_dir, REPORT_FILE), report)
    config = {**source.config, "source_train": source.config.get("train"),
              "train": to_dict(tcfg), "compress": to_dict(ccfg)}
    short = {k: report[k] for k in ("mode", f"{headline}_before", f"{headline}_after",
                                     "sparsity")}
    finish_run(ctx, config, model, source.tokenizer, data, dcfg, _combine(results),
               extra={**info, "compression": short})
    return report


def compress_recipe(recipe: str, run_dir: str, output_dir: str, overrides: Sequence[str] = (),
                    qat_stage: bool = False) -> Dict:
    """compress.py as a function, for pipelines and benchmarks: ``recipe`` (a flagfile of its
    flags) plus ``--name=value`` overrides, over compress.py's fine-tuning defaults.

    ``qat_stage`` runs only the recipe's QAT stage (``--qat_epochs`` at ``--qat_learning_rate``,
    as when QAT follows pruning in one run), e.g. on an already pruned run, whose zeros it keeps.
    """
    defaults = [f"--{k}={v}" for k, v in FINETUNE_DEFAULTS.items()]
    extra = ["--prune=0", "--structured=", "--layer_sparsity=", "--cluster=0",
             "--layer_clusters=", "--qat"] if qat_stage else []
    ccfg, tcfg = parse_flagfile((CompressConfig, TrainConfig), recipe,
                                [f"--run_dir={run_dir}", f"--output_dir={output_dir}", *extra,
                                 *overrides], defaults)
    if qat_stage:
        tcfg = dataclasses.replace(tcfg, epochs=ccfg.qat_epochs or tcfg.epochs,
                                   learning_rate=ccfg.qat_learning_rate or tcfg.learning_rate)
    return compress(CompressExperiment(ccfg, tcfg))
