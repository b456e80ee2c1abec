"""Distil a fine-tuned teacher run into a zoo student: the transfer set, cached or online
teacher outputs, the Distiller fit, and a complete student run directory."""
import dataclasses
import math
import os
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf
import tf_keras as keras
from absl import logging

from slm_tf.config import to_dict
from slm_tf.data.config import DataConfig
from slm_tf.data.pipeline import PreparedData, make_dataset, prepare_data
from slm_tf.data.readers import DataError
from slm_tf.data.unlabeled import check_unlabeled_source, unlabeled_texts
from slm_tf.distill import cache
from slm_tf.distill.augment import AugmentConfig, augment_texts, embedding_neighbours
from slm_tf.distill.config import DistillConfig
from slm_tf.distill.distiller import (FEATURE_LAYER, STUDENT_IDS, TEACHER_FEATURES, TEACHER_IDS,
                                      TEACHER_LOGITS, Distiller, with_features)
from slm_tf.errors import UserError
from slm_tf.io_utils import read_json
from slm_tf.registry import Registry
from slm_tf.tasks.classification import build_classifier
from slm_tf.models import ModelConfig, describe
from slm_tf.models.embedding_init import start_embeddings
from slm_tf.peft import finetune, frozen_encoder
from slm_tf.peft.config import FineTuneConfig
from slm_tf.tokenizers import Tokenizer, TokenizerConfig
from slm_tf.tokenizers.normalize import pretokenize_py
from slm_tf.train import artifacts
from slm_tf.train.artifacts import Run, load_run, require_complete
from slm_tf.train.metrics import classification_report, predict_logits
from slm_tf.train.optim import optimizer_for
from slm_tf.train.strategies import make_strategy
from slm_tf.train.trainer import (TrainConfig, chief_first, close_run, finish_run, fit,
                                  prepare_tokenizer, require_default_strategy, start_run)


@dataclasses.dataclass
class DistillExperiment:
    data: DataConfig
    tokenizer: TokenizerConfig
    model: ModelConfig
    train: TrainConfig
    distill: DistillConfig
    augment: AugmentConfig
    # --init_from (a pretrained student), --train_examples_per_class (few-shot KD: the other
    # training texts join the transfer set unlabelled), LoRA / BitFit / frozen layers.
    finetune: FineTuneConfig = dataclasses.field(default_factory=FineTuneConfig)

    def to_dict(self) -> Dict:
        return {k: to_dict(getattr(self, k)) for k in
                ("data", "tokenizer", "model", "train", "distill", "augment", "finetune")}


class TemperatureSchedule(keras.callbacks.Callback):
    """Linearly anneals the Distiller's temperature from T to 1 over the epochs."""

    def __init__(self, start: float, epochs: int):
        super().__init__()
        self.start, self.epochs = start, epochs

    def on_epoch_begin(self, epoch, logs=None):
        frac = epoch / max(self.epochs - 1, 1)
        self.model.temperature.assign(self.start + (1.0 - self.start) * frac)


def transfer_set(data: PreparedData, teacher: Run, exp: DistillExperiment,
                 held_out: Tuple[str, ...] = ()) -> Tuple[List[str], List[int], Dict[str, int]]:
    """Training texts and labels, plus augmented, ``held_out`` (the training texts a few-shot
    run keeps unlabelled) and unlabeled texts, labelled -1."""
    texts, labels = data.texts("train"), data.labels("train")
    counts = {"labelled": len(texts), "augmented": 0, "held_out_train": len(held_out),
              "unlabeled": 0}
    if exp.augment.augment_copies:
        words = {w for t in texts for w in pretokenize_py(t, True, True)}
        emb = teacher.model.get_layer(index=_embedding_index(teacher.model)).get_weights()[0]
        neighbours = embedding_neighbours(teacher.tokenizer.vocab, emb, sorted(words))
        extra = augment_texts(texts, exp.augment, neighbours)
        counts["augmented"] = len(extra)
        texts, labels = texts + extra, labels + [-1] * len(extra)
    texts, labels = texts + list(held_out), labels + [-1] * len(held_out)
    if exp.distill.unlabeled_data:
        extra = unlabeled_texts(exp.distill, exp.data)
        counts["unlabeled"] = len(extra)
        texts, labels = texts + extra, labels + [-1] * len(extra)
    return texts, labels, counts


def _embedding_index(model) -> int:
    for i, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.Embedding):
            return i
    raise UserError("the teacher has no Embedding layer to draw neighbour words from; "
                    "set --augment_copies=0")


def check_labels(teacher: Run, data: PreparedData) -> None:
    """A DataError unless the teacher was trained on ``data``'s labels (same order)."""
    if list(teacher.label_names) != list(data.label_names):
        raise DataError(f"the teacher in {teacher.run_dir} was trained on labels "
                        f"{teacher.label_names[:5]}... but --data={data.name} has "
                        f"{data.label_names[:5]}...; distil on the teacher's own dataset.")


def distill_dataset(source: tf.data.Dataset, student_tok: Tokenizer, teacher: Run,
                    dcfg: DataConfig, training: bool, seed: int) -> tf.data.Dataset:
    """Batches of ``({student_ids, teacher_logits | teacher_ids}, label)``.

    ``source`` yields ``(text, label, teacher_logits)`` (a cache) or ``(text, label)`` (the
    teacher then runs online on its own ids). Each model gets its own tokenizer's ids.
    """
    def encode(text, label, logits=None, features=None):
        inputs = {STUDENT_IDS: student_tok.tf_encode(text, dcfg.max_seq_len)}
        if logits is None:
            inputs[TEACHER_IDS] = teacher.tokenizer.tf_encode(text, teacher.max_seq_len)
        else:
            inputs[TEACHER_LOGITS] = logits
        if features is not None:
            inputs[TEACHER_FEATURES] = features
        return inputs, label

    ds = source.batch(1024).map(encode).unbatch().cache()
    if training:
        ds = ds.shuffle(200000, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(dcfg.batch_size).prefetch(tf.data.AUTOTUNE)


def teacher_source(exp, teacher: Run, teacher_digest: str, data: PreparedData, split: str,
                   texts: List[str], labels: List[int], scratch_dir: Optional[str] = None
                   ) -> tf.data.Dataset:
    """The transfer examples of ``split`` with cached teacher logits, or without (online).

    ``scratch_dir``: this process is a worker that is not the chief. It reads the chief's cache
    when it sees it (a shared file system) and otherwise computes the same outputs into its own
    scratch folder: it never writes the shared cache, which the chief alone owns.
    """
    if not exp.distill.cache_teacher:
        return tf.data.Dataset.from_tensor_slices((texts, tf.constant(labels, tf.int32)))
    features = exp.distill.feature_weight > 0
    key = cache.cache_key(teacher_digest, teacher.max_seq_len, data.fingerprint, split, len(texts),
                          to_dict(exp.augment) if split == "train" else None,
                          exp.distill.unlabeled_data, exp.distill.max_unlabeled, features)
    path = os.path.join(exp.data.data_dir, cache.CACHE_DIR, f"{data.name}-{split}-{key}.tfrecord")
    if scratch_dir and not os.path.exists(path):
        path = os.path.join(scratch_dir, cache.CACHE_DIR, os.path.basename(path))
    if not os.path.exists(path) and frozen_encoder.enabled(teacher.config):
        # A frozen-encoder teacher: its head on the encoder outputs cached while it trained
        # (those outputs are also the pooled features the feature term matches).
        logits, pooled = frozen_encoder.cached_outputs(
            teacher.model, teacher.tokenizer, texts, teacher.max_seq_len, exp.data.data_dir)
        cache.write_cache(path, texts, labels, logits, pooled if features else None)
    model = with_features(teacher.model) if features else teacher.model
    cache.cached_teacher_outputs(path, model, teacher.tokenizer, texts, labels,
                                 teacher.max_seq_len, features)
    return cache.read_cache(path, data.num_classes, _feature_dim(teacher) if features else 0)


def _feature_dim(teacher: Run) -> int:
    return int(teacher.model.get_layer(FEATURE_LAYER).input.shape[-1])


def transfer_datasets(exp: DistillExperiment, teacher: Run, data: PreparedData,
                      student_tok: Tokenizer, scratch_dir: Optional[str] = None,
                      held_out: Tuple[str, ...] = ()):
    """``(train, validation, transfer-set size, counts)``: Distiller batches of the transfer
    set and of the validation split, with teacher logits cached or computed online
    (``scratch_dir``: see ``teacher_source``; ``held_out``: see ``transfer_set``)."""
    texts, labels, counts = transfer_set(data, teacher, exp, held_out)
    val_texts, val_labels = data.texts("validation"), data.labels("validation")
    # The cache key hashes the teacher's 90 MB weights file: read it once, not per split.
    digest = cache.file_digest(os.path.join(teacher.run_dir, artifacts.MODEL_FILE)) \
        if exp.distill.cache_teacher else ""
    train_ds = distill_dataset(teacher_source(exp, teacher, digest, data, "train", texts, labels,
                                              scratch_dir), student_tok, teacher, exp.data, True, exp.train.seed)
    val_ds = distill_dataset(teacher_source(exp, teacher, digest, data, "validation", val_texts,
                                            val_labels, scratch_dir), student_tok, teacher, exp.data, False,
                             exp.train.seed)
    return train_ds, val_ds, len(texts), counts


# How a task distils, by the teacher's task (config.json): ``(experiment, teacher Run) ->
# metrics``. Token-level tasks build on slm_tf.distill.lm (blocks of ids, labels and a mask of
# the positions that count, fed to the shared Distiller and token cache).
DISTILL_TASKS: Registry[Callable] = Registry("distillation task")


def distill(exp: DistillExperiment) -> Dict:
    """Trains ``exp.model`` as a student of ``exp.distill.teacher_dir``; writes a run directory
    whose model is the student alone (so evaluation and export treat it like any run). The
    task comes from the teacher's ``config.json``; classification runs under ``--strategy``
    (e.g. multi_worker), other tasks on one device."""
    tcfg, kcfg = exp.train, exp.distill
    if tcfg.strategy != "default" and not kcfg.cache_teacher:
        raise UserError(f"--strategy={tcfg.strategy} needs the cached teacher outputs: the "
                        "online teacher is loaded outside the tf.distribute scope. Fix: drop "
                        "--nocache_teacher.")
    require_complete(kcfg.teacher_dir, "--teacher_dir")  # before the student's folder exists
    if exp.finetune.frozen_encoder:
        raise UserError("--frozen_encoder trains a head on a frozen pretrained teacher "
                        "encoder; distill.py trains a whole student. Fix: drop it (use "
                        "--lora_rank, --bitfit or --freeze_layers to train part of a student).")
    check_unlabeled_source(kcfg.unlabeled_data)
    task = artifacts.run_task(kcfg.teacher_dir)
    if task not in DISTILL_TASKS:
        raise UserError(f"{kcfg.teacher_dir} is a --task={task} run; distill.py distils "
                        f"{', '.join(DISTILL_TASKS.names())} teachers so far.")
    if task != "classification":
        require_default_strategy(tcfg, f"distill.py with a --task={task} teacher",
                                 "its student is built outside a tf.distribute scope")
        # Token-level students train on their teacher's ids (one position, one target); of
        # the fine-tuning options only a NER student's --init_from has been built for that
        # (distill_ner checks that the pretrained run read the teacher's vocabulary).
        default, allowed = FineTuneConfig(), {"init_from"} if task == "ner" else set()
        given = [f"--{f.name}" for f in dataclasses.fields(FineTuneConfig)
                 if f.name not in allowed
                 and getattr(exp.finetune, f.name) != getattr(default, f.name)]
        if given:
            raise UserError(f"{', '.join(given)}: distill.py trains a --task={task} student "
                            "on its teacher's tokenizer without these options. Fix: drop "
                            f"{'it' if len(given) == 1 else 'them'} (or train the student "
                            "with train.py).")
    # First: a multi-worker strategy configures collective ops before any other op runs (the
    # teacher's loading included).
    strategy = make_strategy(tcfg.strategy)
    return DISTILL_TASKS.get(task)(exp, load_run(kcfg.teacher_dir), strategy)


def inherited_flags(teacher_dir: str) -> Dict[str, object]:
    """Flag values a student of the run in ``teacher_dir`` takes unless given on the command
    line: for an LM teacher train_lm.py's defaults and the teacher's data section (corpus,
    splits, context, batch size), for a NER teacher its data section (files, splits, sequence
    length), so ``--teacher_dir`` plus the student's size is a complete command. Reads only
    ``config.json``: no TensorFlow op runs before a multi-worker strategy is made."""
    task = artifacts.run_task(teacher_dir)
    config = read_json(os.path.join(teacher_dir, artifacts.CONFIG_FILE))
    if task == "ner":  # the teacher's data files, splits and sequence length
        return dict(config.get("data", {}))
    if task != "lm":
        return {}
    from slm_tf.tasks.lm import LM_DEFAULTS
    return {**LM_DEFAULTS, **config.get("data", {})}


def flag_args(values: Dict[str, object]) -> List[str]:
    """``--name=value`` arguments for a dict of flag values (lists comma-joined, booleans as
    ``--name``/``--noname``)."""
    def one(name, value):
        if isinstance(value, bool):
            return f"--{'' if value else 'no'}{name}"
        return f"--{name}={','.join(map(str, value)) if isinstance(value, list) else value}"
    return [one(k, v) for k, v in values.items()]


def student_configs(teacher_dir: str, flagfile: str, overrides=()):
    """``(data, tokenizer, model, train)`` configs of a student recipe plus ``overrides``,
    over :func:`inherited_flags` of the teacher (a recipe without a corpus trains on the
    teacher's), as distill.py builds them from its command line."""
    from slm_tf.config import parse_flagfile
    return parse_flagfile((DataConfig, TokenizerConfig, ModelConfig, TrainConfig), flagfile,
                          overrides, defaults=flag_args(inherited_flags(teacher_dir)))


@DISTILL_TASKS.register("classification")
def _distill_classifier(exp: DistillExperiment, teacher: Run,
                        strategy: tf.distribute.Strategy) -> Dict:
    tcfg, dcfg = exp.train, exp.data
    kcfg = exp.distill
    ctx = start_run(tcfg, strategy)

    def prepare():
        # The chief prepares the data and writes the teacher cache; the others then read both
        # (see teacher_source). Every worker builds the same transfer set and student
        # tokenizer from the same seeds, so their data shards line up.
        data = prepare_data(dcfg)
        check_labels(teacher, data)
        held_out = tuple(finetune.held_out_texts(exp, data))
        data = finetune.prepare(exp, data, ctx.run_dir)  # --train_examples_per_class
        tok = (finetune.carry_tokenizer(exp, ctx.run_dir) if exp.finetune.init_from
               else prepare_tokenizer(exp.tokenizer, data, ctx.run_dir, ctx.resuming))
        return (data, tok, *transfer_datasets(exp, teacher, data, tok,
                                              None if ctx.is_chief else ctx.run_dir, held_out))
    data, student_tok, train_ds, val_ds, size, counts = chief_first(strategy, ctx, prepare)
    steps_per_epoch = math.ceil(size / dcfg.batch_size)
    with strategy.scope():
        student = build_classifier(exp.model, student_tok, data, dcfg)
        if exp.model.init_embeddings_from or exp.model.freeze_embeddings:
            logging.info("student embeddings: %s",
                         start_embeddings(student, student_tok.vocab, exp.model, teacher))
        adapted = finetune.adapt(student, exp)  # --init_from, LoRA, BitFit, frozen layers
        distiller = Distiller(student, None if kcfg.cache_teacher else teacher.model,
                              kcfg.temperature, kcfg.alpha, kcfg.feature_weight,
                              _feature_dim(teacher) if kcfg.feature_weight else None)
        distiller.compile(optimizer=optimizer_for(tcfg, steps_per_epoch * tcfg.epochs))
    logging.info("student %s: %s; transfer set %s", exp.model.model,
                 describe(student, dcfg.max_seq_len), counts)
    if kcfg.temperature_schedule == "linear":
        logging.info("temperature annealed linearly from %.2f to 1", kcfg.temperature)
    result = fit(distiller, train_ds, val_ds, tcfg, ctx, steps_per_epoch, dcfg.batch_size,
                 keep=student, extra_callbacks=[TemperatureSchedule(kcfg.temperature, tcfg.epochs)]
                 if kcfg.temperature_schedule == "linear" else [])
    s_logits, _ = predict_logits(student, make_dataset(data, "test", student_tok, dcfg, False))
    t_logits, y = predict_logits(teacher.model, make_dataset(
        data, "test", teacher.tokenizer, dataclasses.replace(dcfg, max_seq_len=teacher.max_seq_len),
        False))
    teacher_test = classification_report(y, t_logits, data.label_names)
    extra = {"teacher_accuracy": teacher_test["accuracy"],
             "teacher_macro_f1": teacher_test["macro_f1"],
             "teacher_num_params": teacher.model.count_params(),
             "teacher_agreement": float((s_logits.argmax(1) == t_logits.argmax(1)).mean()),
             "transfer_set": counts, "cached_teacher": kcfg.cache_teacher,
             **finetune.finish(student, exp, adapted, ctx.run_dir, ctx.is_chief)}
    # Every worker evaluates and saves (saving may run collective ops); a non-chief does it
    # into its scratch directory, which goes once it is done.
    metrics = finish_run(ctx, exp.to_dict(), student, student_tok, data, dcfg, result, extra)
    close_run(strategy, ctx)
    return metrics


@DISTILL_TASKS.register("lm")
def _distill_lm(exp: DistillExperiment, teacher: Run, strategy=None) -> Dict:
    from slm_tf.distill.lm import distill_lm
    return distill_lm(exp, teacher)


@DISTILL_TASKS.register("ner")
def _distill_ner(exp: DistillExperiment, teacher: Run, strategy=None) -> Dict:
    from slm_tf.distill.ner import distill_ner
    return distill_ner(exp, teacher)
