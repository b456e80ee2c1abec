"""Building blocks written so tfmot can prune and quantize them later.

Residuals use ``keras.layers.Add`` (a ``+`` becomes an unquantizable TFOpLambda), attention is
our own layer made of ``Dense`` sublayers that implements ``PrunableLayer``, and masks are
explicit float tensors so every op converts to builtin TFLite ops. Masking never adds a huge
negative constant: int8 quantization gives each tensor one scale, and a -1e9 in a tensor's range
would round every real value to the same integer. Masked softmax renormalizes instead, and
masked max pooling fills padding with a real position's value.
"""
import math

import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from slm_tf.errors import UserError
from slm_tf.models.config import POOLINGS

serializable = keras.saving.register_keras_serializable(package="slm_tf")


def masked_softmax(scores, mask):
    """Softmax over the last axis restricted to ``mask == 1`` positions (key 0, [CLS], is
    always real).

    Equal to adding -inf at masked positions, but int8-safe: the shift is the row's maximum
    over real keys, so every real exponent is <= 0 (clamped, so padding cannot overflow the
    range either) and the normalizer is >= 1, never a quantized zero.
    """
    real_max = tf.reduce_max(scores * mask + (1.0 - mask) * scores[..., :1], axis=-1,
                             keepdims=True)
    e = tf.exp(tf.minimum(scores - real_max, 0.0)) * mask
    return e / tf.reduce_sum(e, axis=-1, keepdims=True)


class _NothingToPrune(tfmot.sparsity.keras.PrunableLayer):
    """Tells tfmot a weightless (or position-table) layer has no weights to prune."""

    def get_prunable_weights(self):
        return []


@serializable
class PaddingMask(keras.layers.Layer, _NothingToPrune):
    """``[B, L]`` float mask: 1.0 for real tokens, 0.0 for the padding id."""

    def __init__(self, pad_id: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.pad_id = pad_id

    def call(self, ids):
        return tf.cast(tf.not_equal(ids, self.pad_id), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}


@serializable
class PositionEmbedding(keras.layers.Layer, _NothingToPrune):
    """Learned absolute position embeddings, sliced to the input length."""

    def __init__(self, max_length: int, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            "embeddings", shape=(self.max_length, input_shape[-1]),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        super().build(input_shape)

    def call(self, x):
        length = tf.shape(x)[1]
        return tf.broadcast_to(self.embeddings[tf.newaxis, :length], tf.shape(x))

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}


def rotate_positions(x, positions):
    """Rotary position encoding (RoFormer) of ``[B, H, L, D]`` heads at integer
    ``positions[L]``: pairs of features turn by position-dependent angles, so query-key dot
    products depend only on relative distance (left padding and a key/value cache shift
    nothing)."""
    half = x.shape[-1] // 2
    inv_freq = 1.0 / (10000.0 ** (tf.range(half, dtype=tf.float32) / half))
    angles = tf.cast(positions, tf.float32)[:, tf.newaxis] * inv_freq[tf.newaxis, :]
    cos, sin = tf.cos(angles), tf.sin(angles)
    x1, x2 = x[..., :half], x[..., half:]
    return tf.concat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


@serializable
class MultiHeadSelfAttention(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer,
                             tfmot.clustering.keras.ClusterableLayer):
    """Scaled dot-product self-attention from four ``Dense`` projections.

    Called as ``layer([x, mask])`` with ``mask`` the ``[B, L]`` float padding mask. The
    projections are the attributes named in ``PROJECTIONS``; compression addresses their
    kernels by the paths ``"<projection>.kernel"``. ``causal`` lets a query see only keys at
    or before its position (language models); ``rotary`` encodes positions by rotating queries
    and keys (:func:`rotate_positions`). :meth:`attend` also serves incremental decoding with
    a key/value cache.
    """

    PROJECTIONS = ("query", "key", "value", "output_dense")

    def __init__(self, num_heads: int, dropout: float = 0.0, causal: bool = False,
                 rotary: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.dropout = dropout
        self.causal = causal
        self.rotary = rotary

    def build(self, input_shape):
        width = int(input_shape[0][-1])
        if width % self.num_heads:
            raise UserError(f"width {width} is not divisible by num_heads {self.num_heads}")
        self.head_dim = width // self.num_heads
        if self.rotary and self.head_dim % 2:
            raise UserError(f"rotary positions need an even head width; width {width} / "
                            f"num_heads {self.num_heads} = {self.head_dim}")
        self.query = keras.layers.Dense(width, name="query")
        self.key = keras.layers.Dense(width, name="key")
        self.value = keras.layers.Dense(width, name="value")
        self.output_dense = keras.layers.Dense(width, name="output")
        for layer in (self.query, self.key, self.value, self.output_dense):
            layer.build(input_shape[0])
        self.attention_dropout = keras.layers.Dropout(self.dropout)
        super().build(input_shape)

    def _heads(self, x, batch):
        x = tf.reshape(x, [batch, -1, self.num_heads, self.head_dim])
        return tf.transpose(x, [0, 2, 1, 3])

    def call(self, inputs, training=None):
        x, mask = inputs
        return self.attend(x, mask, training=training)[0]

    def attend(self, x, key_mask, cache=None, training=None):
        """``(output, (keys, values))`` for queries ``x[B, n, D]``.

        ``cache`` holds the ``[B, H, T, D/H]`` keys and values of the ``T`` earlier positions
        (or None); ``key_mask[B, T + n]`` marks real tokens among all keys.
        """
        batch, n = tf.shape(x)[0], tf.shape(x)[1]
        q = self._heads(self.query(x), batch) * (1.0 / math.sqrt(self.head_dim))
        k = self._heads(self.key(x), batch)
        v = self._heads(self.value(x), batch)
        past = 0 if cache is None else tf.shape(cache[0])[2]
        if self.rotary:
            positions = past + tf.range(n)
            q, k = rotate_positions(q, positions), rotate_positions(k, positions)
        if cache is not None:
            k = tf.concat([cache[0], k], axis=2)
            v = tf.concat([cache[1], v], axis=2)
        scores = tf.matmul(q, k, transpose_b=True)
        mask = key_mask[:, tf.newaxis, tf.newaxis, :]
        if self.causal:
            query_pos = past + tf.range(n)
            key_pos = tf.range(past + n)
            earlier = tf.cast(key_pos[tf.newaxis, :] <= query_pos[:, tf.newaxis], mask.dtype)
            # A query always sees itself, so a padding query's row is never all-masked.
            itself = tf.cast(key_pos[tf.newaxis, :] == query_pos[:, tf.newaxis], mask.dtype)
            mask = tf.maximum(mask * earlier, itself)
        weights = masked_softmax(scores, mask)
        weights = self.attention_dropout(weights, training=training)
        context = tf.transpose(tf.matmul(weights, v), [0, 2, 1, 3])
        context = tf.reshape(context, [batch, -1, self.num_heads * self.head_dim])
        return self.output_dense(context), (k, v)

    def get_prunable_weights(self):
        return [getattr(self, p).kernel for p in self.PROJECTIONS]

    def get_clusterable_weights(self):
        return [(f"{p}.kernel", getattr(self, p).kernel) for p in self.PROJECTIONS]

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "dropout": self.dropout,
                "causal": self.causal, "rotary": self.rotary}




@serializable
class MaskedPooling(keras.layers.Layer, _NothingToPrune):
    """Pools ``[B, L, D]`` over real tokens: mean, max, the first ([CLS]) token, mean+max, the
    mean scaled to unit length, or the sum divided by the square root of the token count."""

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        x, mask = inputs
        m = mask[:, :, tf.newaxis]
        if self.mode == "cls":
            return x[:, 0]
        count = tf.maximum(tf.reduce_sum(m, axis=1), 1.0)
        if self.mode == "sqrt_n":
            # Between a sum (long texts dominate) and a mean (each token's gradient shrinks
            # with length): the scaling TF-IDF's L2-normalized vectors of distinct n-grams get.
            return tf.reduce_sum(x * m, axis=1) / tf.sqrt(count)
        mean = tf.reduce_sum(x * m, axis=1) / count
        if self.mode == "mean":
            return mean
        if self.mode == "mean_unit":
            # Sentence encoders (e.g. all-MiniLM-L6-v2) are trained for cosine similarity: their
            # mean vectors' lengths carry little meaning, and a linear head on unit vectors
            # separates out-of-scope queries far better (clinc150, frozen MiniLM: 80% recall
            # costs 1.5 points of in-scope accuracy instead of 4.6).
            return tf.math.l2_normalize(mean, axis=-1)
        # Position 0 ([CLS]) is always a real token: padding takes its value, so it can never
        # win the max.
        mx = tf.reduce_max(x * m + (1.0 - m) * x[:, :1], axis=1)
        return mx if self.mode == "max" else tf.concat([mean, mx], axis=-1)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@serializable
class HashedBigrams(keras.layers.Layer, _NothingToPrune):
    """``[B, L]`` bucket ids of each (left neighbour, token) id pair: ``(prev * vocab_size +
    id) mod buckets``, the left neighbour of position 0 being padding. Integer ops only
    (pad, multiply, add, floor-mod), so bigram features stay inside the exported graph.
    With ``order=3`` the bucket of each (second left, left, token) triple instead, hashed one
    neighbour at a time: ``((prev2 * vocab_size + prev) mod buckets) * vocab_size + id) mod
    buckets``, so no intermediate exceeds ``buckets * vocab_size`` (int32 holds it up to
    2**31; the constructor checks)."""

    def __init__(self, vocab_size: int, buckets: int, order: int = 2, **kwargs):
        super().__init__(**kwargs)
        if order not in (2, 3):
            raise ValueError(f"HashedBigrams: order must be 2 or 3, got {order}")
        if order == 3 and (buckets + 1) * vocab_size >= 2 ** 31:
            raise ValueError(f"HashedBigrams: {buckets} trigram buckets x {vocab_size} ids "
                             "overflow int32; use fewer buckets or a smaller vocabulary")
        self.vocab_size = vocab_size
        self.buckets = buckets
        self.order = order

    def call(self, ids):
        prev = tf.pad(ids[:, :-1], [[0, 0], [1, 0]])
        if self.order == 2:
            return tf.math.floormod(prev * self.vocab_size + ids, self.buckets)
        prev2 = tf.pad(ids[:, :-2], [[0, 0], [2, 0]])
        left = tf.math.floormod(prev2 * self.vocab_size + prev, self.buckets)
        return tf.math.floormod(left * self.vocab_size + ids, self.buckets)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "buckets": self.buckets,
                "order": self.order}


@serializable
class ZeroPadding(keras.layers.Layer, _NothingToPrune):
    """``x * mask[..., None]``: padding positions hold zeros, so a ``same`` convolution sees
    the same neighbours whether a sentence is padded to 40 or to 100 positions."""

    def call(self, inputs):
        x, mask = inputs
        return x * mask[:, :, tf.newaxis]


@serializable
class ReverseByLength(keras.layers.Layer, _NothingToPrune):
    """``[B, L, D]`` with each row's first ``sum(mask)`` positions reversed, padding left in
    place: a backward recurrent layer run on it reads a sentence's last real token first, so
    its states do not depend on how far the sentence is padded. A batched gather: one builtin
    TFLite op (the same call undoes it)."""

    def call(self, inputs):
        x, mask = inputs
        steps = tf.shape(x)[1]
        lengths = tf.cast(tf.reduce_sum(mask, axis=1), tf.int32)[:, tf.newaxis]
        t = tf.range(steps)[tf.newaxis]
        index = tf.where(t < lengths, lengths - 1 - t, t)
        return tf.gather(x, index, batch_dims=1)
