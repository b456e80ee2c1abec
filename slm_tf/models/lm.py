"""Causal (next-token) language models: a decoder-only Transformer and LSTM/GRU LMs.

Each maps ``ids[int32, B x L]`` to next-token ``logits[B x L x V]`` as a functional graph
(serializable, tfmot-friendly like the classifiers) and adds :meth:`step` for incremental
decoding that reuses the same layers: the Transformer keeps a key/value cache per block, the
recurrent models their states, so generating a token never recomputes the prefix.
"""
import math
from typing import Dict, List, Optional, Tuple

import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from slm_tf.models.base import TextClassifier
from slm_tf.models.layers import PaddingMask, masked_softmax, rotate_positions, serializable
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

    # A fixed-size key/value cache: one graph serves every decoding step (Python generation
    # and the exported prefill/decode signatures alike), so no shape changes between tokens.
    def cache_shape(self, batch_size) -> List:
        """``[2 * layers (keys of block i at 2i, values at 2i + 1), batch, heads, max_seq_len,
        head_width]``: 5-D, because LiteRT's slicing ops take at most 5 dimensions."""
        cfg = self.model_config
        heads = cfg["num_heads"]
        return [2 * cfg["num_layers"], batch_size, heads, self.max_seq_len,
                cfg["hidden_dim"] // heads]

    def init_state(self, batch_size: int):
        """An empty cache: no slot written (``valid`` 0), next position 0."""
        return {"cache": tf.zeros(self.cache_shape(batch_size)),
                "valid": tf.zeros([batch_size, self.max_seq_len]),
                "slot_position": tf.zeros([self.max_seq_len], tf.int32),
                "position": tf.constant(0, tf.int32)}

    def cached_forward(self, ids, cache, write, key_mask, positions):
        """``(logits[B, n, V], cache)`` for ``n`` new tokens ``ids[B, n]`` at absolute
        ``positions[n]``: their keys/values go to the cache slots one-hot in ``write[n, M]``
        (other slots keep theirs), then query ``i`` attends to the slots where
        ``key_mask[B, n, M]`` is 1. Builtin TFLite ops only (the exported step functions)."""
        embedding = self.get_layer("token_embedding")
        keep = 1.0 - tf.reduce_max(write, axis=0)[:, tf.newaxis]  # [M, 1]
        scatter = tf.transpose(write)  # [M, n]: slot <- new token
        mask = key_mask[:, tf.newaxis]  # [B, 1, n, M]
        x = embedding(ids)
        batch = tf.shape(ids)[0]
        new_cache = []
        for i in range(self.model_config["num_layers"]):
            attention = self.get_layer(f"block{i}_attention")
            h = self.get_layer(f"block{i}_attention_norm")(x)
            q = attention._heads(attention.query(h), batch) * (1.0 / math.sqrt(
                attention.head_dim))
            k = attention._heads(attention.key(h), batch)
            v = attention._heads(attention.value(h), batch)
            if attention.rotary:
                q, k = rotate_positions(q, positions), rotate_positions(k, positions)
            keys = cache[2 * i] * keep + tf.matmul(scatter, k)
            values = cache[2 * i + 1] * keep + tf.matmul(scatter, v)
            new_cache += [keys, values]
            weights = masked_softmax(tf.matmul(q, keys, transpose_b=True), mask)
            context = tf.transpose(tf.matmul(weights, values), [0, 2, 1, 3])
            context = tf.reshape(context, [batch, -1, attention.num_heads *
                                           attention.head_dim])
            x = x + attention.output_dense(context)
            h = self.get_layer(f"block{i}_ffn_norm")(x)
            x = x + self.get_layer(f"block{i}_ffn_out")(self.get_layer(f"block{i}_ffn_in")(h))
        x = self.get_layer("final_norm")(x)
        return embedding(x, mode="logits"), tf.stack(new_cache)

    def step(self, ids, state, mask=None):
        ids = tf.convert_to_tensor(ids, tf.int32)
        mask = tf.cast(tf.not_equal(ids, 0) if mask is None else mask, tf.float32)
        if not hasattr(self, "_compiled_step"):
            # One trace for every batch size and chunk length: each token is one graph call.
            # Single-token steps are compiled by XLA into a few fused kernels (per-op dispatch
            # dominated them); prompts, one call each, skip the per-shape compilation.
            matrix = tf.TensorSpec([None, None], tf.float32)
            signature = [tf.TensorSpec([None, None], tf.int32),
                         {"cache": tf.TensorSpec(self.cache_shape(None), tf.float32),
                          "valid": matrix,
                          "slot_position": tf.TensorSpec([self.max_seq_len], tf.int32),
                          "position": tf.TensorSpec([], tf.int32)}, matrix]
            self._compiled_prompt = tf.function(self._step, input_signature=signature)
            self._compiled_step = tf.function(self._step, jit_compile=True,
                                              input_signature=signature)
        if ids.shape[1] != 1:
            return self._compiled_prompt(ids, state, mask)
        return self._compiled_step(ids, state, mask)

    def _step(self, ids, state, mask):
        # Slots form a ring: beyond the trained context a new token overwrites the oldest key
        # (a sliding window; rotary attention depends on relative positions only, so the kept
        # keys stay valid). Chunks are at most max_seq_len tokens (generate cuts prompts).
        n = tf.shape(ids)[1]
        positions = state["position"] + tf.range(n)
        write = tf.one_hot(positions % self.max_seq_len, self.max_seq_len)  # [n, M]
        written = tf.reduce_max(write, axis=0)
        slot_position = tf.where(written > 0, tf.reduce_max(
            tf.cast(write, tf.int32) * positions[:, tf.newaxis], axis=0),
            state["slot_position"])
        valid = state["valid"] * (1.0 - written) + tf.matmul(mask, write)
        earlier = tf.cast(slot_position[tf.newaxis, :] <= positions[:, tf.newaxis], tf.float32)
        # A query always sees itself, so a padding query's row is never all-masked.
        key_mask = tf.maximum(valid[:, tf.newaxis, :] * earlier, write)
        logits, cache = self.cached_forward(ids, state["cache"], write, key_mask, positions)
        return logits, {"cache": cache, "valid": valid, "slot_position": slot_position,
                        "position": positions[-1] + 1}


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
        if not hasattr(self, "_compiled_step"):
            # A graph per input shape (prompt, then [B, 1] for every later token).
            self._compiled_step = tf.function(self._step, reduce_retracing=True)
        return self._compiled_step(ids, state, mask)

    def _step(self, ids, state, mask):
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
