"""What compression needs from a named-entity run (``COMPRESS_TASKS["ner"]``): entity F1
before/after, the tagger's own loss (CRF or token cross-entropy) while pruning and QAT
fine-tune, or per-position KD from a NER teacher through :mod:`slm_tf.distill.ner` (the same
transfer batches and teacher cache as distill.py).

The fine-tuned graphs are plain functional clones (tfmot wrappers inside), so the CRF is
found by class (:func:`slm_tf.ner.training.crf_layer`), not through ``TokenClassifier.crf``.
"""
import os
from typing import Dict

import numpy as np

from slm_tf.compress.config import CALIBRATION_ROWS
from slm_tf.config import from_dict
from slm_tf.data.readers import DataError
from slm_tf.errors import UserError
from slm_tf.io_utils import file_digest
from slm_tf.train import artifacts
from slm_tf.train.artifacts import load_run


class NerCompressOps:
    """Entity F1 as the headline; the NER task's batches (length-sorted for padding-invariant
    taggers) or the teacher's per-position distributions."""
    headline = "entity_f1"

    @staticmethod
    def prepare(source, dcfg, ccfg):
        from slm_tf.tasks.ner import prepare_ner_data
        return prepare_ner_data(dcfg, tag_names=source.label_names)

    @staticmethod
    def evaluate(model, data, source, dcfg) -> Dict:
        from slm_tf.tasks.ner import evaluate_ner
        out = {}
        for split in ("validation", "test"):
            report = evaluate_ner(model, data, split, source.tokenizer, dcfg.max_seq_len,
                                  data.tag_names)
            out[split] = {k: report[k] for k in ("entity_f1", "precision", "recall",
                                                 "token_accuracy")}
        return out

    @staticmethod
    def sample_ids(data, source, dcfg, rows: int = CALIBRATION_ROWS) -> np.ndarray:
        """The first ``rows`` training sentences as padded id rows (QAT range calibration)."""
        from slm_tf.tasks.ner import _encoded
        return _encoded(data, "train", source.tokenizer, dcfg.max_seq_len).ids[:rows]

    @staticmethod
    def training(ccfg, source, data, dcfg, tcfg):
        from slm_tf.compress.run import _Training
        from slm_tf.tasks.ner import NerTask
        if ccfg.teacher_dir:
            return _distilled(ccfg, source, data, dcfg, tcfg)
        task = NerTask()
        task._length_batches = source.config["model"]["model"] in NerTask.PADDING_INVARIANT
        train_ds, val_ds = task.datasets(data, source.tokenizer, dcfg, tcfg)

        def make_trainer(wrapped, stage_cfg, total_steps):
            task.compile(wrapped, stage_cfg, total_steps)
            return wrapped
        return _Training(train_ds, val_ds, task.steps_per_epoch(data, dcfg.batch_size),
                         make_trainer, {"teacher_dir": None}, task)


def _distilled(ccfg, source, data, dcfg, tcfg):
    """Per-position KD from ``--teacher_dir`` (a NER run over the same units and tags)."""
    from slm_tf.compress.run import _Training
    from slm_tf.distill.augment import AugmentConfig
    from slm_tf.distill.config import DistillConfig
    from slm_tf.distill.distiller import Distiller
    from slm_tf.distill.ner import ner_experiment, ner_transfer
    from slm_tf.distill.run import DistillExperiment
    from slm_tf.tasks.ner import NerTask
    from slm_tf.models import ModelConfig
    from slm_tf.tokenizers import TokenizerConfig
    from slm_tf.train.optim import optimizer_for
    teacher = load_run(ccfg.teacher_dir)
    if teacher.task != "ner" or teacher.tokenizer.vocab != source.tokenizer.vocab or \
            teacher.max_seq_len != source.max_seq_len:
        raise UserError(f"--teacher_dir={ccfg.teacher_dir} must be a ner run with the same "
                        f"tokenizer and --max_seq_len as {ccfg.run_dir} (per-position KD "
                        "compares the tag distributions of the same units).")
    if list(teacher.label_names) != list(data.tag_names):
        raise DataError(f"the teacher in {ccfg.teacher_dir} tags {teacher.label_names[:5]}... "
                        f"but {ccfg.run_dir} tags {data.tag_names[:5]}...; use a teacher "
                        "trained on the same data.")
    kd = from_dict(DistillConfig, {**source.config.get("distill", {}),
                                   "teacher_dir": ccfg.teacher_dir, "cache_teacher": True,
                                   "feature_weight": 0.0, "temperature_schedule": "constant"})
    if ccfg.temperature:
        kd.temperature = ccfg.temperature
    if ccfg.alpha >= 0:
        kd.alpha = ccfg.alpha
    exp = ner_experiment(DistillExperiment(
        dcfg, from_dict(TokenizerConfig, source.config["tokenizer"]),
        from_dict(ModelConfig, source.config["model"]), tcfg, kd, AugmentConfig()), teacher)
    digest = file_digest(os.path.join(teacher.run_dir, artifacts.MODEL_FILE))
    train_ds = ner_transfer(exp, teacher, data, "train", digest, training=True)
    val_ds = ner_transfer(exp, teacher, data, "validation", digest, training=False)

    def make_trainer(wrapped, stage_cfg, total_steps):
        distiller = Distiller(wrapped, None, kd.temperature, kd.alpha, entity_tag_f1=True)
        distiller.compile(optimizer=optimizer_for(stage_cfg, total_steps))
        return distiller
    task = NerTask()
    return _Training(train_ds, val_ds, task.steps_per_epoch(data, dcfg.batch_size),
                     make_trainer, {"teacher_dir": ccfg.teacher_dir,
                                    "temperature": kd.temperature, "alpha": kd.alpha}, task)

