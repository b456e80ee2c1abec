"""Token-level distillation of a named-entity tagger: the student learns the teacher's
temperature-scaled tag distribution at every tagged position (plus the gold tag), through the
shared :class:`~slm_tf.distill.distiller.Distiller` and token cache.

Student and teacher share the teacher's tokenizer and sequence length, so one position means
the same unit for both (a character student of a character teacher); a student pretrained on
the teacher's vocabulary (``--init_from``, the pipeline's pretrain stage) starts from those
weights. A CRF teacher's emissions are distilled as per-position logits, and a CRF student
starts from (and keeps) the teacher's transition, start and end scores: the Distiller's loss
trains emissions only, and the teacher's transitions are the ones those emissions were shaped
for.
"""
import dataclasses
import hashlib
import os
from typing import Dict

import numpy as np
import tensorflow as tf
from absl import logging

from slm_tf.config import from_dict
from slm_tf.distill import token_cache
from slm_tf.distill.cache import CACHE_DIR, cache_key
from slm_tf.distill.distiller import STUDENT_IDS, TEACHER_IDS, Distiller
from slm_tf.errors import UserError
from slm_tf.io_utils import file_digest
from slm_tf.models import describe
from slm_tf.ner.training import crf_layer
from slm_tf.peft.finetune import load_init_from
from slm_tf.tasks.ner import NerTask, encode_split, evaluate_ner, prepare_ner_data
from slm_tf.tokenizers import TokenizerConfig, load_tokenizer
from slm_tf.tokenizers.base import VOCAB_FILE
from slm_tf.train import artifacts
from slm_tf.train.optim import optimizer_for
from slm_tf.train.trainer import finish_run, fit, start_run


def ner_experiment(exp, teacher):
    """``exp`` made consistent with a NER teacher: its tokenizer, task and sequence length."""
    return dataclasses.replace(
        exp, tokenizer=from_dict(TokenizerConfig, teacher.config["tokenizer"]),
        data=dataclasses.replace(exp.data, max_seq_len=teacher.max_seq_len),
        train=dataclasses.replace(exp.train, task=teacher.task))


def ner_transfer(exp, teacher, data, split: str, digest: str, training: bool) -> tf.data.Dataset:
    """Distiller batches ``({student_ids, teacher ...}, tags, mask of tagged positions)``."""
    enc = encode_split(data.split(split), teacher.tokenizer, data.tag_names, data.scheme,
                       exp.data.max_seq_len)
    ids, labels = enc.ids, enc.targets
    if training:
        order = np.random.RandomState(exp.train.seed).permutation(len(ids))
        ids, labels = ids[order], labels[order]
    blocks = (ids, labels, (labels >= 0).astype(np.float32))
    if exp.distill.cache_teacher:
        tags = len(data.tag_names)
        top_k = token_cache.top_k_for(tags, exp.distill.cache_top_k)
        key = cache_key(digest, exp.data.max_seq_len, split, token_cache.cache_format(top_k),
                        exp.train.seed if training else None,
                        hashlib.sha1(ids.tobytes() + labels.tobytes()).hexdigest())
        path = os.path.join(exp.data.data_dir, CACHE_DIR,
                            f"ner-{data.name}-{split}-{key}.tfrecord")
        ds = token_cache.cached_token_outputs(path, teacher.model, blocks, tags, top_k)
    else:
        ds = tf.data.Dataset.from_tensor_slices(
            ({STUDENT_IDS: blocks[0], TEACHER_IDS: blocks[0]}, blocks[1], blocks[2]))
    if training:
        ds = ds.shuffle(min(len(ids), exp.data.shuffle_buffer), seed=exp.train.seed,
                        reshuffle_each_iteration=True)
    return ds.batch(exp.data.batch_size).prefetch(tf.data.AUTOTUNE)


def distill_ner(exp, teacher) -> Dict:
    """Trains ``exp.model`` as a tagger on the teacher's per-position tag distributions;
    writes a student run directory (an ordinary ``--task=ner`` run)."""
    from slm_tf.distill.run import TemperatureSchedule
    exp = ner_experiment(exp, teacher)
    tcfg, dcfg, kcfg = exp.train, exp.data, exp.distill
    task = NerTask()
    _check_init_from(exp, teacher)  # before the student's folder exists
    ctx = start_run(tcfg)
    data = prepare_ner_data(dcfg, tag_names=teacher.label_names)
    tokenizer = teacher.tokenizer
    tokenizer.save(os.path.join(ctx.run_dir, artifacts.TOKENIZER_DIR))
    digest = file_digest(os.path.join(teacher.run_dir, artifacts.MODEL_FILE)) \
        if kcfg.cache_teacher else ""
    train_ds = ner_transfer(exp, teacher, data, "train", digest, training=True)
    val_ds = ner_transfer(exp, teacher, data, "validation", digest, training=False)
    steps_per_epoch = task.steps_per_epoch(data, dcfg.batch_size)
    student = task.build_model(exp.model, tokenizer, data, dcfg)
    start = load_init_from(student, exp.finetune.init_from) if exp.finetune.init_from else {}
    teacher_crf = crf_layer(teacher.model)
    if student.crf is not None and teacher_crf is not None:
        student.crf.set_weights(teacher_crf.get_weights())
    distiller = Distiller(student, None if kcfg.cache_teacher else teacher.model,
                          kcfg.temperature, kcfg.alpha, entity_tag_f1=True)
    distiller.compile(optimizer=optimizer_for(tcfg, steps_per_epoch * tcfg.epochs))
    s_params, t_params = student.count_params(), teacher.model.count_params()
    logging.info("student %s: %s (%.1f%% of the teacher's %d parameters)", exp.model.model,
                 describe(student, dcfg.max_seq_len), 100.0 * s_params / t_params, t_params)
    schedule = [TemperatureSchedule(kcfg.temperature, tcfg.epochs)] \
        if kcfg.temperature_schedule == "linear" else []
    result = fit(distiller, train_ds, val_ds, tcfg, ctx, steps_per_epoch, dcfg.batch_size,
                 keep=student, extra_callbacks=schedule, task=task)
    teacher_test = evaluate_ner(teacher.model, data, "test", tokenizer, dcfg.max_seq_len,
                                data.tag_names)
    extra = {"teacher_entity_f1": teacher_test["entity_f1"],
             "teacher_per_type": teacher_test["per_type"],
             "teacher_num_params": t_params, "params_ratio": s_params / t_params,
             "distillation": {"temperature": kcfg.temperature, "alpha": kcfg.alpha,
                              "cached_teacher": kcfg.cache_teacher,
                              "crf_from_teacher": student.crf is not None
                              and teacher_crf is not None}}
    if start:
        extra["finetune"] = start
    return finish_run(ctx, exp.to_dict(), student, tokenizer, data, dcfg, result, extra,
                      task=task)


def _check_init_from(exp, teacher) -> None:
    """``--init_from`` (a masked-LM pretraining run) must have read the teacher's vocabulary:
    the student is trained on the teacher's ids."""
    source = exp.finetune.init_from
    if not source:
        return
    pretrained = load_tokenizer(os.path.join(source, artifacts.TOKENIZER_DIR))
    if pretrained.vocab != teacher.tokenizer.vocab:
        raise UserError(
            f"--init_from={source} was pretrained on its own {pretrained.kind} vocabulary "
            f"({pretrained.vocab_size} tokens), but a NER student reads its teacher's ids "
            f"({teacher.tokenizer.vocab_size} tokens). Fix: pretrain with the teacher's "
            f"vocabulary (--tokenizer={teacher.tokenizer.kind} --vocab_file="
            f"{os.path.join(teacher.run_dir, artifacts.TOKENIZER_DIR, VOCAB_FILE)}).")


def print_ner_distill_summary(m: Dict, exp) -> None:
    """The table distill.py prints after a NER student."""
    from slm_tf.cli import print_table
    print_table([[m["data"]["name"], exp.model.model, f"{m['entity_f1']:.4f}",
                  f"{m['teacher_entity_f1']:.4f}", f"{m['num_params']:,}",
                  f"{m['teacher_num_params']:,}", f"{m['train_seconds']:.0f}"]],
                ["data", "student", "test entity F1", "teacher entity F1", "student params",
                 "teacher params", "train s"])
    print(f"\nstudent run: {exp.train.output_dir}; TensorBoard: tensorboard --logdir "
          f"{exp.train.output_dir}/logs")
