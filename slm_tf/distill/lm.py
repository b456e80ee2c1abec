"""Token-level distillation of a language model: the student learns the teacher's
temperature-scaled next-token distribution at every position (plus the hard next token).

Student and teacher share the teacher's tokenizer (the KL compares distributions over one
vocabulary). The transfer set is the training stream cut into consecutive blocks of
``context + 1`` tokens (inputs, next-token labels); with the cache on (default) the teacher
runs once over those fixed blocks, written in a seeded random order, and every epoch
reshuffles them; online, the teacher runs on each batch.
"""
import dataclasses
import hashlib
import os
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from slm_tf.data.lm_dataset import pack_blocks
from slm_tf.distill import token_cache
from slm_tf.distill.cache import CACHE_DIR, cache_key
from slm_tf.distill.distiller import STUDENT_IDS, TEACHER_IDS, Distiller
from slm_tf.distill.run import TemperatureSchedule
from slm_tf.io_utils import file_digest
from slm_tf.models import describe
from slm_tf.tasks import get_task
from slm_tf.train import artifacts
from slm_tf.train.optim import optimizer_for
from slm_tf.train.trainer import finish_run, fit, start_run

SHUFFLE_BLOCKS = 1024  # blocks held for shuffling a cached epoch (on top of the file's order)


def lm_blocks(stream: np.ndarray, context: int, training: bool) -> token_cache.Blocks:
    """``(ids, labels, mask)`` of consecutive blocks of ``stream``: training keeps full blocks
    only, evaluation also the padded last one (mask 0 on its padding)."""
    blocks, mask = pack_blocks(stream, context, keep_remainder=not training)
    return blocks[:, :-1], blocks[:, 1:], mask


def _shuffled(blocks: token_cache.Blocks, seed: int) -> token_cache.Blocks:
    order = np.random.RandomState(seed).permutation(len(blocks[0]))
    return tuple(b[order] for b in blocks)


def _online(blocks: token_cache.Blocks) -> tf.data.Dataset:
    ids, labels, mask = blocks
    return tf.data.Dataset.from_tensor_slices(
        ({STUDENT_IDS: ids, TEACHER_IDS: ids}, labels, mask))


def lm_transfer(exp, teacher, data, training: bool, split: str, digest: str
                ) -> Tuple[tf.data.Dataset, int]:
    """``(dataset, blocks)``: Distiller batches of ``split``, the teacher cached or online."""
    context, batch = exp.data.max_seq_len, exp.data.batch_size
    blocks = lm_blocks(data.stream(split, teacher.tokenizer), context, training)
    if training:
        blocks = _shuffled(blocks, exp.train.seed)
    vocab = teacher.tokenizer.vocab_size
    if exp.distill.cache_teacher:
        top_k = token_cache.top_k_for(vocab, exp.distill.cache_top_k)
        key = cache_key(digest, context, split, token_cache.cache_format(top_k),
                        exp.train.seed if training else None,
                        hashlib.sha1(blocks[0].tobytes()).hexdigest())
        path = os.path.join(exp.data.data_dir, CACHE_DIR, f"lm-{data.name}-{split}-{key}.tfrecord")
        ds = token_cache.cached_token_outputs(path, teacher.model, blocks, vocab, top_k)
    else:
        ds = _online(blocks)
    if training:
        ds = ds.shuffle(SHUFFLE_BLOCKS, seed=exp.train.seed, reshuffle_each_iteration=True)
    return ds.batch(batch, drop_remainder=training).prefetch(tf.data.AUTOTUNE), len(blocks[0])


def teacher_agreement(student, teacher, stream: np.ndarray, context: int,
                      batch_size: int = 32) -> Dict:
    """Mean per-token ``KL(teacher || student)`` (nats, T = 1) and next-token argmax agreement
    of two LMs over every position of ``stream``."""
    ids, _, mask = lm_blocks(stream, context, training=False)
    fs = tf.function(lambda x: student(x, training=False))
    ft = tf.function(lambda x: teacher(x, training=False))
    kl = agree = total = 0.0
    for start in range(0, len(ids), batch_size):
        x = tf.constant(ids[start:start + batch_size])
        w = mask[start:start + batch_size]
        s = tf.nn.log_softmax(tf.cast(fs(x), tf.float32), -1)
        t = tf.nn.log_softmax(tf.cast(ft(x), tf.float32), -1)
        kl += float(tf.reduce_sum(tf.reduce_sum(tf.exp(t) * (t - s), -1) * w))
        agree += float(tf.reduce_sum(tf.cast(tf.equal(tf.argmax(s, -1), tf.argmax(t, -1)),
                                             tf.float32) * w))
        total += float(w.sum())
    return {"kl_teacher_student": kl / total, "agreement": agree / total}


def lm_experiment(exp, teacher):
    """``exp`` made consistent with an LM teacher: the teacher's tokenizer and task."""
    from slm_tf.tokenizers import TokenizerConfig
    from slm_tf.config import from_dict
    return dataclasses.replace(
        exp, tokenizer=from_dict(TokenizerConfig, teacher.config["tokenizer"]),
        train=dataclasses.replace(exp.train, task=teacher.task))


def distill_lm(exp, teacher) -> Dict:
    """Trains ``exp.model`` on the teacher LM's next-token distributions; writes a student
    run directory (an ordinary LM run: evaluate, generate and export treat it like any)."""
    exp = lm_experiment(exp, teacher)
    tcfg, dcfg, kcfg = exp.train, exp.data, exp.distill
    task = get_task(teacher.task)
    ctx = start_run(tcfg)
    data = task.prepare_data(dcfg)
    tokenizer = teacher.tokenizer  # one vocabulary for both: the KL compares per token
    tokenizer.save(os.path.join(ctx.run_dir, artifacts.TOKENIZER_DIR))
    digest = file_digest(os.path.join(teacher.run_dir, artifacts.MODEL_FILE)) \
        if kcfg.cache_teacher else ""
    train_ds, blocks = lm_transfer(exp, teacher, data, True, "train", digest)
    val_ds, _ = lm_transfer(exp, teacher, data, False, "validation", digest)
    steps_per_epoch = blocks // dcfg.batch_size
    student = task.build_model(exp.model, tokenizer, data, dcfg)
    distiller = Distiller(student, None if kcfg.cache_teacher else teacher.model,
                          kcfg.temperature, kcfg.alpha)
    distiller.compile(optimizer=optimizer_for(tcfg, steps_per_epoch * tcfg.epochs))
    s_params, t_params = student.count_params(), teacher.model.count_params()
    logging.info("student %s: %s (%.1f%% of the teacher's %d parameters); %d training "
                 "blocks of %d tokens", exp.model.model, describe(student, dcfg.max_seq_len),
                 100.0 * s_params / t_params, t_params, blocks, dcfg.max_seq_len)
    schedule = [TemperatureSchedule(kcfg.temperature, tcfg.epochs)] \
        if kcfg.temperature_schedule == "linear" else []
    result = fit(distiller, train_ds, val_ds, tcfg, ctx, steps_per_epoch, dcfg.batch_size,
                 keep=student, extra_callbacks=schedule, task=task)
    teacher_test = task.evaluate(teacher.model, data, "test", tokenizer,
                                 dataclasses.replace(dcfg, max_seq_len=teacher.max_seq_len))
    extra = {"teacher_bits_per_character": teacher_test["bits_per_character"],
             "teacher_num_params": t_params, "params_ratio": s_params / t_params,
             "teacher_test": teacher_agreement(student, teacher.model,
                                               data.stream("test", tokenizer), dcfg.max_seq_len,
                                               dcfg.batch_size),
             "distillation": {"temperature": kcfg.temperature, "alpha": kcfg.alpha,
                              "cached_teacher": kcfg.cache_teacher,
                              "cache_top_k": token_cache.top_k_for(tokenizer.vocab_size,
                                                                   kcfg.cache_top_k)
                              if kcfg.cache_teacher else None,
                              "training_blocks": blocks}}
    return finish_run(ctx, exp.to_dict(), student, tokenizer, data, dcfg, result, extra,
                      task=task)



def print_distill_summary(m: Dict, exp) -> None:
    """The table distill.py prints after an LM student."""
    from slm_tf.cli import print_table
    print_table([[m["data"]["name"], exp.model.model, f"{m['bits_per_character']:.4f}",
                  f"{m['teacher_bits_per_character']:.4f}",
                  f"{m['teacher_test']['agreement']:.4f}", f"{m['num_params']:,}",
                  f"{m['teacher_num_params']:,}", f"{m['train_seconds']:.0f}"]],
                ["data", "student", "test bits/char", "teacher bits/char", "agreement",
                 "student params", "teacher params", "train s"])
    print(f"\nstudent run: {exp.train.output_dir}; TensorBoard: tensorboard --logdir "
          f"{exp.train.output_dir}/logs")
