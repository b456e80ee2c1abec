"""The GPT's exported step graph: the same function as ``GPTLanguageModel.cached_forward``,
written with fewer TFLite operators.

Every operator and its output tensors cost ~130 bytes of flatbuffer structure per signature,
and a dynamic-range file is a quarter of its float file only if that structure is small next
to the int8 weights (the 0.8M GPT: 325 operators per signature = 110 KB, 12% of the file). So
the weights are rearranged once at export (numpy), exactly:

- each LayerNorm's gamma/beta is folded into the dense layer(s) it feeds
  (``(n * g + b) @ W + c = n @ (g[:, None] * W) + (b @ W + c)``), the final one excepted
  (it feeds the tied embedding);
- query, key and value are one ``[width, 3 * width]`` matrix, the ``1 / sqrt(head_width)``
  query scale folded into its query columns;
- rotary positions rotate q, k and v in one step (v with angle 0) from sine/cosine tables
  built once per call: ``x * cos + x[..., perm] * sin`` (one gather instead of two slices
  and a concat);
- the masked softmax is the builtin SOFTMAX over ``scores + bias`` (bias 0 or -1e9, built
  once per call), the same probabilities as ``masked_softmax``;
- prefill writes every slot of a zero cache, so its new cache is its keys/values themselves.

Batch 1 only (the step functions' contract): activations are ``[n, width]`` matrices.
"""
import math
from typing import List

import numpy as np
import tensorflow as tf


MASK_BIAS = -10 ** 9  # exp(MASK_BIAS - max) is exactly 0 in float32
# The rotary angles (position x frequency) reach M rad: an int8 file keeps the operator that
# computes them in float (denylisted by this name), since an int8 step there (0.5 rad at
# M = 128) scrambles every rotation after it.
ROTARY_ANGLES = "rotary_angles"
# An int8 file's masked scores are set to -INT8_MASK_FLOOR instead of adding -1e9 (which would
# take the whole int8 range of the scores): the scores' own range is about +-30, so masked
# keys keep at most exp(-30 - row max) of the weight, far below int8's 1/256 resolution.
INT8_MASK_FLOOR = 30.0


def attention_mask(sees, int8_safe: bool):
    """What :meth:`CompactGPT.forward` takes as ``mask`` for ``sees[n, M]`` (bool): the
    additive bias (0 or ``MASK_BIAS``), or for an int8 file the 0/1 mask (``int8_safe``). Computed in int32
    and cast, so no quantizer calibrates the arithmetic."""
    if int8_safe:
        return tf.cast(sees, tf.float32)
    return tf.cast((tf.cast(sees, tf.int32) - 1) * -MASK_BIAS, tf.float32)


def _dense(layer):
    kernel, bias = layer.kernel.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)
    return kernel, bias


def fold_layer_norm(norm, kernel, bias):
    """``(kernel', bias')`` with ``norm_affine(n) @ kernel + bias == n @ kernel' + bias'``
    for a LayerNormalization ``norm`` whose normalized input is ``n``."""
    gamma = norm.gamma.numpy().astype(np.float64)
    beta = norm.beta.numpy().astype(np.float64)
    return gamma[:, None] * kernel, beta @ kernel + bias


class CompactGPT(tf.Module):
    """A trained ``GPTLanguageModel``'s weights, rearranged for the exported step graph."""

    def __init__(self, model, int8_safe: bool = False):
        super().__init__()
        # An int8 file masks its scores to a floor (INT8_MASK_FLOOR), not by -1e9.
        self.int8_safe = int8_safe
        cfg = model.model_config
        self.num_layers, self.num_heads = cfg["num_layers"], cfg["num_heads"]
        self.width = cfg["hidden_dim"]
        self.head_dim = self.width // self.num_heads
        self.context = int(model.max_seq_len)
        layer = model.get_layer
        self.eps = float(layer("final_norm").epsilon)
        var = lambda x, name: tf.Variable(np.asarray(x, np.float32), trainable=False,
                                          name=name)
        self.embeddings = var(layer("token_embedding").embeddings.numpy(), "embeddings")
        self.final_gamma = var(layer("final_norm").gamma.numpy(), "final_gamma")
        self.final_beta = var(layer("final_norm").beta.numpy(), "final_beta")
        self.qkv_kernel: List[tf.Variable] = []
        self.qkv_bias: List[tf.Variable] = []
        self.out_kernel: List[tf.Variable] = []
        self.out_bias: List[tf.Variable] = []
        self.ffn_in_kernel: List[tf.Variable] = []
        self.ffn_in_bias: List[tf.Variable] = []
        self.ffn_out_kernel: List[tf.Variable] = []
        self.ffn_out_bias: List[tf.Variable] = []
        scale = 1.0 / math.sqrt(self.head_dim)
        for i in range(self.num_layers):
            attention = layer(f"block{i}_attention")
            if not attention.rotary:
                raise ValueError("the export graph encodes rotary positions only")
            (wq, bq), (wk, bk), (wv, bv) = (_dense(d) for d in (attention.query, attention.key,
                                                                attention.value))
            kernel, bias = fold_layer_norm(layer(f"block{i}_attention_norm"),
                                           np.concatenate([wq * scale, wk, wv], axis=1),
                                           np.concatenate([bq * scale, bk, bv]))
            self.qkv_kernel.append(var(kernel, f"qkv_kernel{i}"))
            self.qkv_bias.append(var(bias, f"qkv_bias{i}"))
            wo, bo = _dense(attention.output_dense)
            self.out_kernel.append(var(wo, f"out_kernel{i}"))
            self.out_bias.append(var(bo, f"out_bias{i}"))
            kernel, bias = fold_layer_norm(layer(f"block{i}_ffn_norm"),
                                           *_dense(layer(f"block{i}_ffn_in")))
            self.ffn_in_kernel.append(var(kernel, f"ffn_in_kernel{i}"))
            self.ffn_in_bias.append(var(bias, f"ffn_in_bias{i}"))
            w2, b2 = _dense(layer(f"block{i}_ffn_out"))
            self.ffn_out_kernel.append(var(w2, f"ffn_out_kernel{i}"))
            self.ffn_out_bias.append(var(b2, f"ffn_out_bias{i}"))
        half = self.head_dim // 2
        inv_freq = 1.0 / (10000.0 ** (np.arange(half, dtype=np.float32) / half))
        self._inv_freq = np.concatenate([inv_freq, inv_freq]).astype(np.float32)
        self._sign = np.concatenate([-np.ones(half), np.ones(half)]).astype(np.float32)
        self._perm = np.concatenate([np.arange(half, 2 * half), np.arange(half)]).astype(
            np.int32)

    def _normalize(self, x):
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        centred = x - mean
        variance = tf.reduce_mean(centred * centred, axis=-1, keepdims=True)
        return centred * tf.math.rsqrt(variance + self.eps)

    def rotary_tables(self, positions):
        """``(cos, sin)`` of shape ``[3, 1, n, head_width]`` for q, k, v at ``positions[n]``
        (int32): v's rows are 1 and 0, the sign of ``rotate_half`` is folded into sin."""
        # Reshaped while still integers, so nothing between them and the product is quantized.
        positions = tf.cast(positions[:, tf.newaxis], tf.float32)
        # Named: an int8 file keeps this product in float (FLOAT_NODES).
        angles = tf.multiply(positions, self._inv_freq,
                             name=ROTARY_ANGLES)  # [n, D]
        qk = np.array([1.0, 1.0, 0.0], np.float32).reshape(3, 1, 1, 1)
        cos = tf.cos(angles) * qk + (1.0 - qk)
        sin = tf.sin(angles) * (self._sign * qk)
        return cos, sin

    def forward(self, ids, cache, mask, cos, sin, keep=None, scatter=None):
        """``(logits[n, V], new_cache[2 * layers, heads, M, head_width])`` for tokens
        ``ids[1, n]``. ``mask[n, M]`` (:func:`attention_mask`) says which slots a query
        sees. With ``keep``/``scatter`` (``[M, 1]``: 1 - one-hot slot, one-hot slot;
        decode, n = 1) the token's key/value replaces ``cache``'s slot; without them
        (prefill, n = M) the keys/values of the n tokens are the new cache."""
        h_n, d = self.num_heads, self.head_dim
        x = tf.gather(self.embeddings, ids[0])  # [n, width]
        n = x.shape[0]
        new_cache = []
        for i in range(self.num_layers):
            qkv = tf.matmul(self._normalize(x), self.qkv_kernel[i]) + self.qkv_bias[i]
            qkv = tf.transpose(tf.reshape(qkv, [n, 3, h_n, d]), [1, 2, 0, 3])  # [3, H, n, D]
            qkv = qkv * cos + tf.gather(qkv, self._perm, axis=-1) * sin
            q, kv = tf.split(qkv, [1, 2], axis=0)
            if scatter is not None:
                kv = cache[2 * i:2 * i + 2] * keep + scatter * kv  # [2, H, M, D]
            new_cache.append(kv)
            keys, values = tf.split(kv, 2, axis=0)
            scores = tf.matmul(q, keys, transpose_b=True, name="attention_scores")
            if self.int8_safe:
                scores = scores * mask + (mask - 1.0) * INT8_MASK_FLOOR
            else:
                scores = scores + mask
            weights = tf.nn.softmax(scores, name="attention_weights")
            context = tf.transpose(tf.matmul(weights, values, name="attention_context"),
                                   [0, 2, 1, 3])  # [1, n, H, D]
            x = x + tf.matmul(tf.reshape(context, [n, self.width]), self.out_kernel[i]) \
                + self.out_bias[i]
            h = tf.matmul(self._normalize(x), self.ffn_in_kernel[i]) + self.ffn_in_bias[i]
            h = tf.nn.gelu(h, approximate=False)
            x = x + tf.matmul(h, self.ffn_out_kernel[i]) + self.ffn_out_bias[i]
        x = self._normalize(x) * self.final_gamma + self.final_beta
        logits = tf.matmul(x, self.embeddings, transpose_b=True)
        return logits, tf.concat(new_cache, axis=0)
