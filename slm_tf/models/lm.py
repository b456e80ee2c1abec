"""Causal (next-token) language models: a decoder-only Transformer and LSTM/GRU LMs.

Each maps ``ids[int32, B x L]`` to next-token ``logits[B x L x V]`` as a functional graph
(serializable, tfmot-friendly like the classifiers) and adds :meth:`step` for incremental
decoding that reuses the same layers: the Transformer keeps a key/value cache per block, the
recurrent models their states, so generating a token never recomputes the prefix.
"""
from typing import Dict, List, Optional, Tuple

import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from slm_tf.models.base import TextClassifier
from slm_tf.models.layers import PaddingMask, serializable
from slm_tf.models.transformer import pre_ln_block


@serializable
class TiedEmbedding(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    """Token embeddings that also produce output logits (``mode="logits"``: ``x @ E^T``), so
    input and output embeddings share one matrix (half the parameters of a small LM's ends)."""

    def __init__(self, vocab_size: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.width = width

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            "embeddings", shape=(self.vocab_size, self.width),
            initializer=keras.initializers.RandomNormal(stddev=0.02))
        super().build(input_shape)

    def call(self, inputs, mode: str = "embed"):
        if mode == "logits":
            return tf.matmul(inputs, self.embeddings, transpose_b=True)
        return tf.gather(self.embeddings, inputs)

    def get_prunable_weights(self):
        return [self.embeddings]

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "width": self.width}


class CausalLM(TextClassifier):
    """Base of the language models: ``num_classes`` is the vocabulary size and
    ``max_seq_len`` the trained context (generation keeps at most that many tokens)."""

    is_language_model = True

    def __init__(self, vocab_size: int, num_classes: int, max_seq_len: int, config: Dict,
                 **kwargs):
        super().__init__(vocab_size, vocab_size, max_seq_len, config, **kwargs)

    def init_state(self, batch_size: int):
        """The decoding state before any token."""
        raise NotImplementedError

    def step(self, ids, state, mask=None) -> Tuple[tf.Tensor, object]:
        """``(logits[B, n, V], new_state)`` for the next ``n`` tokens ``ids[B, n]`` given
        ``state``; ``mask[B, n]`` (1 = real) marks left padding of batched prompts."""
        raise NotImplementedError


@serializable
class GPTLanguageModel(CausalLM):
    """Decoder-only Transformer: tied embeddings, pre-LN blocks of causal rotary attention and
    a GELU feed-forward, final LayerNorm."""

    arch = "gpt"

    @staticmethod
    def build_graph(ids, vocab_size, num_classes, max_seq_len, cfg):
        layers = keras.layers
        embedding = TiedEmbedding(vocab_size, cfg.hidden_dim, name="token_embedding")
        mask = PaddingMask(name="padding_mask")(ids)
        x = embedding(ids)
        x = layers.Dropout(cfg.dropout, name="embedding_dropout")(x)
        for i in range(cfg.num_layers):
            x = pre_ln_block(x, mask, i, cfg, causal=True, rotary=True)
        x = layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name="final_norm")(x)
        return embedding(x, mode="logits")

    def init_state(self, batch_size: int):
        """Empty caches: per block ``(keys, values)`` of shape ``[B, H, 0, D/H]``, and the
        ``[B, 0]`` mask of real tokens."""
        cfg = self.model_config
        heads, width = cfg["num_heads"], cfg["hidden_dim"]
        empty = tf.zeros([batch_size, heads, 0, width // heads])
        return {"cache": [(empty, empty) for _ in range(cfg["num_layers"])],
                "mask": tf.zeros([batch_size, 0])}

    def step(self, ids, state, mask=None):
        ids = tf.convert_to_tensor(ids, tf.int32)
        mask = tf.cast(tf.not_equal(ids, 0) if mask is None else mask, tf.float32)
        if not hasattr(self, "_compiled_step"):
            # One trace for every batch size, chunk length and cache length.
            cfg = self.model_config
            kv = tf.TensorSpec([None, cfg["num_heads"], None,
                                cfg["hidden_dim"] // cfg["num_heads"]], tf.float32)
            matrix = tf.TensorSpec([None, None], tf.float32)
            self._compiled_step = tf.function(self._step, input_signature=[
                tf.TensorSpec([None, None], tf.int32),
                {"cache": [(kv, kv)] * cfg["num_layers"], "mask": matrix}, matrix])
        return self._compiled_step(ids, state, mask)

    def _step(self, ids, state, mask):
        # Beyond the trained context the oldest keys drop out (a sliding window: rotary
        # attention depends on relative positions only, so the kept keys stay valid).
        keep = self.max_seq_len - tf.shape(ids)[1]
        state = {"cache": [(k[:, :, -keep:], v[:, :, -keep:]) for k, v in state["cache"]],
                 "mask": state["mask"][:, -keep:]}
        key_mask = tf.concat([state["mask"], mask], axis=1)
        embedding = self.get_layer("token_embedding")
        x = embedding(ids)
        cache = []
        for i in range(self.model_config["num_layers"]):
            h = self.get_layer(f"block{i}_attention_norm")(x)
            h, kv = self.get_layer(f"block{i}_attention").attend(h, key_mask,
                                                                 state["cache"][i])
            cache.append(kv)
            x = x + h
            h = self.get_layer(f"block{i}_ffn_norm")(x)
            x = x + self.get_layer(f"block{i}_ffn_out")(self.get_layer(f"block{i}_ffn_in")(h))
        x = self.get_layer("final_norm")(x)
        return embedding(x, mode="logits"), {"cache": cache, "mask": key_mask}


def _recurrent_lm_graph(cell_layer, ids, vocab_size, cfg):
    layers = keras.layers
    embedding = TiedEmbedding(vocab_size, cfg.embedding_dim, name="token_embedding")
    x = layers.Dropout(cfg.dropout, name="embedding_dropout")(embedding(ids))
    for i in range(cfg.num_layers):
        x = cell_layer(cfg.hidden_dim, return_sequences=True, name=f"rnn{i}")(x)
        x = layers.Dropout(cfg.dropout, name=f"rnn{i}_dropout")(x)
    x = layers.Dense(cfg.embedding_dim, name="output_projection")(x)
    return embedding(x, mode="logits")


class _RecurrentLM(CausalLM):
    """Tied embeddings, stacked unidirectional recurrent layers, a projection back to the
    embedding width."""

    def _steppers(self) -> List[keras.layers.RNN]:
        # RNN wrappers around the trained layers' own cells: same weights, but they return
        # their states and accept initial ones.
        if not hasattr(self, "_rnn_steppers"):
            self._rnn_steppers = [
                keras.layers.RNN(self.get_layer(f"rnn{i}").cell, return_sequences=True,
                                 return_state=True)
                for i in range(self.model_config["num_layers"])]
        return self._rnn_steppers

    def init_state(self, batch_size: int):
        """Zero states of every layer."""
        units = self.model_config["hidden_dim"]
        n_states = len(self.get_layer("rnn0").cell.state_size) \
            if isinstance(self.get_layer("rnn0").cell.state_size, (list, tuple)) else 1
        return [[tf.zeros([batch_size, units]) for _ in range(n_states)]
                for _ in range(self.model_config["num_layers"])]

    def step(self, ids, state, mask=None):
        ids = tf.convert_to_tensor(ids, tf.int32)
        mask = tf.not_equal(ids, 0) if mask is None else tf.cast(mask, tf.bool)
        embedding = self.get_layer("token_embedding")
        x = embedding(ids)
        new_state = []
        for stepper, s in zip(self._steppers(), state):
            # Masked (padding) steps carry the state over unchanged.
            out = stepper(x, mask=mask, initial_state=list(s))
            x, states = out[0], list(out[1:])
            new_state.append(states)
        x = self.get_layer("output_projection")(x)
        return embedding(x, mode="logits"), new_state


@serializable
class LSTMLanguageModel(_RecurrentLM):
    """LSTM language model."""

    arch = "lstm_lm"

    @staticmethod
    def build_graph(ids, vocab_size, num_classes, max_seq_len, cfg):
        return _recurrent_lm_graph(keras.layers.LSTM, ids, vocab_size, cfg)


@serializable
class GRULanguageModel(_RecurrentLM):
    """GRU language model."""

    arch = "gru_lm"

    @staticmethod
    def build_graph(ids, vocab_size, num_classes, max_seq_len, cfg):
        return _recurrent_lm_graph(keras.layers.GRU, ids, vocab_size, cfg)


LANGUAGE_MODELS = (GPTLanguageModel, LSTMLanguageModel, GRULanguageModel)


def is_language_model(model: Optional[keras.Model]) -> bool:
    """True for the causal LMs of this module."""
    return bool(getattr(model, "is_language_model", False))
