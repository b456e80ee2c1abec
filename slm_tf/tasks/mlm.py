"""Masked-language modelling (BERT's objective) of a zoo encoder on unlabeled text.

15% of the real tokens (never padding, [CLS] or [SEP]) are chosen; 80% of those become
[MASK], 10% a random token, 10% stay; the loss is cross-entropy on the chosen positions only.
The model is the zoo architecture's own encoder (same layer names as its classifier, so
``--init_from`` finds every tensor) with a BERT-style head: Dense + GELU, LayerNorm, and a
vocabulary projection (set to the transposed token embeddings when a checkpoint without an MLM
head is loaded: ``init_decoder_from_embeddings``); training projects only the chosen positions
(``slm_tf.models.masked_lm.MaskedLM``). Data: any labelled source (its texts; labels are
ignored, the test split is never trained on) or a raw-text corpus (.txt file or folder, one
document per file), plus ``--unlabeled_data`` (``WithUnlabeled``).
"""
import math
import os
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from slm_tf.errors import UserError
from slm_tf.models.base import INPUT_NAME
from slm_tf.models.masked_lm import HEAD_LAYERS, MaskedLM, chosen_logits
from slm_tf.tasks.base import TASKS, Task
from slm_tf.tokenizers.base import CLS, MASK, PAD, SEP
from slm_tf.train.optim import optimizer_for

MASK_RATE = 0.15
# Of the chosen positions: [MASK], a random token, unchanged (Devlin et al., 2019).
REPLACE_MASK, REPLACE_RANDOM = 0.8, 0.1
EVAL_SEED = 1234


def mask_tokens(ids: tf.Tensor, mask_id: int, special_ids, first_random_id: int,
                vocab_size: int, seed: tf.Tensor, rate: float = MASK_RATE):
    """``(inputs, targets, weights)`` for ids ``[B, L]``: ``weights`` is 1.0 where a position
    was chosen (and must be predicted), ``targets`` the original ids. ``seed`` is a stateless
    RNG seed ``[2]`` (the same seed, the same masks)."""
    special = tf.reduce_any(ids[..., tf.newaxis] == tf.constant(list(special_ids), ids.dtype),
                            axis=-1)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    chosen = (~special) & (tf.random.stateless_uniform(tf.shape(ids), seeds[0]) < rate)
    r = tf.random.stateless_uniform(tf.shape(ids), seeds[1])
    random_ids = tf.random.stateless_uniform(tf.shape(ids), seeds[2], first_random_id,
                                             vocab_size, dtype=ids.dtype)
    inputs = tf.where(chosen & (r < REPLACE_MASK), tf.constant(mask_id, ids.dtype),
                      tf.where(chosen & (r >= REPLACE_MASK) &
                               (r < REPLACE_MASK + REPLACE_RANDOM), random_ids, ids))
    return inputs, ids, tf.cast(chosen, tf.float32)


def masking_ids(tokenizer):
    """``(mask_id, special ids, first id a random replacement may take)`` of a tokenizer."""
    vocab = tokenizer.token_to_id
    if MASK not in vocab:
        raise UserError(f"the {tokenizer.kind} tokenizer has no {MASK} token. Fix: use "
                        "--tokenizer=wordpiece or char (both reserve it).")
    special = [vocab[t] for t in (PAD, CLS, SEP) if t in vocab]
    return vocab[MASK], special, max(special + [vocab[MASK]]) + 1


def build_mlm_model(model_cfg, vocab_size: int, max_seq_len: int) -> keras.Model:
    """The zoo encoder ``model_cfg.model`` with a masked-LM head: ids -> logits [B, L, V]."""
    from slm_tf.models.zoo import MODELS
    encoder = MODELS.get(model_cfg.model)
    ids = keras.Input(shape=(None,), dtype="int32", name=INPUT_NAME)
    encoded = encoder.encode_tokens(ids, vocab_size, max_seq_len, model_cfg)
    if encoded is None:
        raise UserError(f"--model={model_cfg.model} has no per-token states to pretrain. Fix: "
                        "use --model=transformer, bert, bilstm, bigru or cnn.")
    x = encoded[0]
    x = keras.layers.Dense(int(x.shape[-1]), activation="gelu", name=HEAD_LAYERS[0])(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name=HEAD_LAYERS[1])(x)
    logits = keras.layers.Dense(vocab_size, name=HEAD_LAYERS[2])(x)
    return MaskedLM(ids, logits, name=f"mlm_{model_cfg.model}")


def init_decoder_from_embeddings(model: keras.Model) -> str:
    """Sets the vocabulary projection to the transposed token embeddings (bias 0): BERT ties
    the two, so a checkpoint shipped without its MLM head (MiniLM) starts with a decoder that
    already scores tokens by their embedding, and only the small transform is new."""
    decoder = model.get_layer(HEAD_LAYERS[2])
    vocab, width = decoder.kernel.shape[1], decoder.kernel.shape[0]
    tables = [l for l in model.layers if isinstance(l, keras.layers.Embedding)
              and l.input_dim == vocab and l.output_dim == width]
    if len(tables) != 1:
        raise UserError(f"{model.name}: {len(tables)} token-embedding tables of shape "
                        f"[{vocab}, {width}] match the MLM decoder; expected exactly one.")
    decoder.kernel.assign(tf.transpose(tables[0].embeddings))
    decoder.bias.assign(tf.zeros_like(decoder.bias))
    return f"MLM decoder initialised from {tables[0].name} (transposed)"


class WithUnlabeled:
    """Prepared data whose training texts also include unlabeled ones (everything else, such
    as the validation and test splits, is the labelled source's)."""

    def __init__(self, data, extra: List[str]):
        # Joined once: the trainer asks for the training texts several times (tokenizer,
        # steps per epoch, dataset).
        self.data, self.train_texts = data, list(data.texts("train")) + list(extra)

    def texts(self, split: str) -> List[str]:
        return self.train_texts if split == "train" else self.data.texts(split)

    def __getattr__(self, name):
        return getattr(self.data, name)


def _is_corpus(path: str) -> bool:
    return path.endswith(".txt") or (os.path.isdir(path) and any(
        n.endswith(".txt") for n in os.listdir(path)))


@TASKS.register("mlm")
class MaskedLMTask(Task):
    """Pretraining of an encoder by masked-language modelling (``scripts/pretrain.py``)."""

    name = "mlm"
    monitor = "val_loss"
    monitor_mode = "min"
    headline = "accuracy"  # of the masked tokens
    summary_metrics = ("accuracy", "loss")

    def prepare_data(self, dcfg):
        if _is_corpus(dcfg.data):
            from slm_tf.tasks.lm import prepare_corpus
            return prepare_corpus(dcfg)
        from slm_tf.data.pipeline import prepare_data
        return prepare_data(dcfg)

    def build_model(self, model_cfg, tokenizer, data, dcfg):
        masking_ids(tokenizer)
        return build_mlm_model(model_cfg, tokenizer.vocab_size, dcfg.max_seq_len)

    def _dataset(self, texts, tokenizer, dcfg, seed: int, training: bool):
        mask_id, special, first = masking_ids(tokenizer)
        ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts)))
        ds = ds.batch(1024).map(lambda t: tokenizer.tf_encode(t, dcfg.max_seq_len)).unbatch()
        ds = ds.cache()
        if training:
            ds = ds.shuffle(dcfg.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(dcfg.batch_size)
        # A new mask for every batch of every epoch in training; fixed masks for evaluation.
        counter = tf.data.Dataset.counter() if training else tf.data.Dataset.from_tensors(
            tf.constant(0, tf.int64)).repeat()
        ds = tf.data.Dataset.zip((ds, counter)).map(
            lambda ids, i: mask_tokens(ids, mask_id, special, first, tokenizer.vocab_size,
                                       tf.stack([tf.cast(seed, tf.int64), i])))
        return ds.prefetch(tf.data.AUTOTUNE)

    def with_unlabeled(self, data, texts: List[str]) -> WithUnlabeled:
        return WithUnlabeled(data, texts)

    def after_checkpoint(self, model) -> str:
        return init_decoder_from_embeddings(model)

    def datasets(self, data, tokenizer, dcfg, tcfg):
        return (self._dataset(data.texts("train"), tokenizer, dcfg, tcfg.seed, True),
                self._dataset(data.texts("validation"), tokenizer, dcfg, EVAL_SEED, False))

    def compile(self, model, tcfg, total_steps: int) -> None:
        model.compile(optimizer=optimizer_for(tcfg, total_steps),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      weighted_metrics=["accuracy"])

    def evaluate(self, model, data, split, tokenizer, dcfg, log_dir: Optional[str] = None,
                 step: int = 0) -> Dict:
        nll, correct, n = 0.0, 0, 0
        for inputs, targets, weights in self._dataset(data.texts(split), tokenizer, dcfg,
                                                      EVAL_SEED, False):
            logits, index = chosen_logits(model, inputs, weights)
            logp = tf.nn.log_softmax(logits).numpy()
            t = tf.gather_nd(targets, index).numpy()
            nll -= float(logp[np.arange(len(t)), t].sum())
            correct += int((logp.argmax(-1) == t).sum())
            n += len(t)
        loss = nll / max(n, 1)
        report = {"accuracy": correct / max(n, 1), "loss": loss, "perplexity": math.exp(loss),
                  "masked_tokens": n}
        if log_dir:
            with tf.summary.create_file_writer(log_dir).as_default():
                for k in ("accuracy", "loss"):
                    tf.summary.scalar(f"{split}/mlm_{k}", report[k], step=step)
        return report

    def run_metrics(self, test: Dict, validation: Dict) -> Dict:
        return {**test, "validation": dict(validation)}
