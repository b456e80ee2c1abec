"""Language modelling: next-token prediction on raw text, scored in bits per character.

Data is a corpus of documents (a folder of .txt files, one .txt, or a text column of a
CSV/TSV/JSONL) split by document (:mod:`slm_tf.data.corpus`); ``--validation_data`` and
``--test_data`` either name separate files or list documents of ``--data`` by name,
comma-separated (e.g. ``--test_data=hamlet.txt,tempest.txt``). ``--max_seq_len`` is the
context. Training draws windows at random stream positions (:mod:`slm_tf.data.lm_dataset`);
an epoch is (training characters / context) windows: known before the tokenizer exists and
the same for every tokenizer (with subwords an epoch sees each token several times).
"""
import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from slm_tf.data.corpus import Corpus, read_documents, split_documents
from slm_tf.data.lm_dataset import evaluation_dataset, split_stream, training_dataset
from slm_tf.data.sources import ALL
from slm_tf.errors import UserError
from slm_tf.lm_metrics import evaluate_lm
from slm_tf.models import build_model, is_language_model
from slm_tf.tasks.base import TASKS, Task
from slm_tf.train.artifacts import LOG_DIR
from slm_tf.train.optim import optimizer_for

REVERSIBLE = ("char_exact", "sentencepiece")
REPORT_METRICS = ("bits_per_character", "cross_entropy", "perplexity", "bits_per_token",
                  "accuracy", "tokens", "characters")


class LMData:
    """A split corpus plus the token streams of its splits (made once per tokenizer)."""

    def __init__(self, corpus: Corpus, context: int):
        self.corpus = corpus
        self.context = context
        self.name = corpus.name
        self._streams = {}

    def texts(self, split: str):
        return self.corpus.texts(split)

    def stream(self, split: str, tokenizer):
        key = (split, id(tokenizer))
        if key not in self._streams:
            self._streams[key] = split_stream(self.texts(split), tokenizer)
        return self._streams[key]

    def summary(self) -> Dict:
        return {"name": self.name, "splits": self.corpus.summary(), "skipped_rows_total": 0}


def _split_option(value: str, dcfg):
    """Documents of a split option: a path's documents, or names of documents in --data."""
    if not value:
        return None, ()
    if os.path.exists(value):
        return read_documents(value, dcfg.text_column, dcfg.data_format, dcfg.on_bad_row), ()
    return None, tuple(n.strip() for n in value.split(",") if n.strip())


def prepare_corpus(dcfg) -> LMData:
    """Reads and splits ``dcfg.data`` by document."""
    docs = read_documents(dcfg.data, dcfg.text_column, dcfg.data_format, dcfg.on_bad_row)
    name = os.path.basename(os.path.normpath(dcfg.data))
    val_docs, val_names = _split_option(dcfg.validation_data, dcfg)
    test_docs, test_names = _split_option(dcfg.test_data, dcfg)
    # Splits given as separate files are filled below, so only the others must be non-empty.
    required = [s for s, d in (("train", None), ("validation", val_docs), ("test", test_docs))
                if not d]
    if val_names or test_names:
        corpus = split_documents(docs, explicit={"validation": val_names, "test": test_names},
                                 name=name, required=required)
    else:
        corpus = split_documents(docs, dcfg.validation_fraction, dcfg.test_fraction, name=name,
                                 required=required)
    # Separate files replace the held-out share of --data for their split.
    if val_docs:
        corpus.splits["train"] += corpus.splits["validation"]
        corpus.splits["validation"] = val_docs
    if test_docs:
        corpus.splits["train"] += corpus.splits["test"]
        corpus.splits["test"] = test_docs
    return LMData(corpus, dcfg.max_seq_len)


def lm_loss():
    """Next-token cross-entropy on logits (nats per token)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@TASKS.register("lm")
class LanguageModelTask(Task):
    """Causal language modelling with gpt, lstm_lm or gru_lm and a reversible tokenizer."""

    name = "lm"
    monitor = "val_loss"
    monitor_mode = "min"
    headline = "bits_per_character"
    higher_is_better = False
    summary_metrics = ("bits_per_character", "perplexity", "accuracy")

    def prepare_data(self, dcfg) -> LMData:
        return prepare_corpus(dcfg)

    def train_size(self, data) -> int:
        return sum(len(t) for t in data.texts("train"))

    def steps_per_epoch(self, data, batch_size: int) -> int:
        return max(1, self.train_size(data) // (data.context * batch_size))

    def build_model(self, model_cfg, tokenizer, data, dcfg):
        if tokenizer.kind not in REVERSIBLE:
            raise UserError(f"--tokenizer={tokenizer.kind} cannot give text back. Fix: pass "
                            f"--tokenizer=char_exact or sentencepiece with --task=lm.")
        model = build_model(model_cfg, tokenizer.vocab_size, tokenizer.vocab_size,
                            dcfg.max_seq_len)
        if not is_language_model(model):
            raise UserError(f"--model={model_cfg.model} is not a language model. Fix: pass "
                            "--model=gpt, lstm_lm or gru_lm with --task=lm.")
        return model

    def datasets(self, data, tokenizer, dcfg, tcfg):
        train = training_dataset(data.stream("train", tokenizer), dcfg.max_seq_len,
                                 dcfg.batch_size, seed=tcfg.seed)
        steps = self.steps_per_epoch(data, dcfg.batch_size)
        val = evaluation_dataset(data.stream("validation", tokenizer), dcfg.max_seq_len,
                                 dcfg.batch_size)
        return train.take(steps), val

    def compile(self, model, tcfg, total_steps: int) -> None:
        model.compile(optimizer=optimizer_for(tcfg, total_steps), loss=lm_loss(),
                      weighted_metrics=["accuracy"])

    def evaluate(self, model, data, split, tokenizer, dcfg, log_dir: Optional[str] = None,
                 step: int = 0) -> Dict:
        report = evaluate_lm(model, tokenizer, data.texts(split), dcfg.max_seq_len,
                             dcfg.batch_size)
        if log_dir:
            with tf.summary.create_file_writer(log_dir).as_default():
                for k in ("bits_per_character", "perplexity", "accuracy"):
                    tf.summary.scalar(f"{split}/{k}", report[k], step=step)
        return report

    def evaluate_saved(self, run, dcfg, split: str):
        """A saved LM on ``split`` of ``dcfg.data``, or on all of its documents ("all": any
        text file or folder)."""
        if split == ALL:
            docs = read_documents(dcfg.data, dcfg.text_column, dcfg.data_format,
                                  dcfg.on_bad_row)
            data = LMData(Corpus(os.path.basename(os.path.normpath(dcfg.data)), {ALL: docs}),
                          dcfg.max_seq_len)
        else:
            data = self.prepare_data(dcfg)
        log_dir = os.path.join(run.run_dir, LOG_DIR, f"eval_{data.name}_{split}")
        return self.evaluate(run.model, data, split, run.tokenizer, dcfg, log_dir), data

    def calibration_inputs(self, run, count: int):
        """``count`` windows of ``max_seq_len`` token ids evenly spaced over the training
        stream (int8 calibration of the exported step functions)."""
        from slm_tf.config import from_dict
        from slm_tf.data.config import DataConfig
        stream = self.prepare_data(from_dict(DataConfig, run.config["data"])).stream(
            "train", run.tokenizer)
        m = run.max_seq_len
        starts = np.linspace(0, max(0, len(stream) - m), count).astype(int)
        return np.stack([np.asarray(stream[s:s + m], np.int32) for s in starts])

    def run_metrics(self, test: Dict, validation: Dict) -> Dict:
        return {**{k: test[k] for k in REPORT_METRICS},
                "validation": {k: validation[k] for k in REPORT_METRICS}}


def print_lm_summary(m: Dict, exp) -> None:
    """The one-table summary train scripts print after an LM run."""
    from slm_tf.cli import print_table
    print_table([[m["data"]["name"], exp.model.model, f"{m['bits_per_character']:.4f}",
                  f"{m['validation']['bits_per_character']:.4f}", f"{m['perplexity']:.2f}",
                  f"{m['num_params']:,}", f"{m['train_seconds']:.0f}"]],
                ["data", "model", "test bits/char", "val bits/char", "test ppl (token)",
                 "params", "train s"])
    print(f"\nartifacts: {exp.train.output_dir} (model.keras, tokenizer/, metrics.json); "
          f"generate: python scripts/generate.py --run_dir={exp.train.output_dir} "
          "--prompt=...")


# What train_lm.py changes from train.py's defaults (a small character-level GPT).
LM_DEFAULTS = {"task": "lm", "model": "gpt", "tokenizer": "char_exact", "vocab_size": 1000,
               "min_frequency": 1, "max_seq_len": 128, "batch_size": 32, "hidden_dim": 128,
               "num_layers": 4, "num_heads": 4, "ff_dim": 512, "dropout": 0.0,
               "learning_rate": 2e-3, "baseline": False}
