"""TF-IDF + linear classifier as a Keras graph over token ids: the classical long-document model
(scikit-learn's ``TfidfVectorizer(analyzer="char_wb", sublinear_tf=True)`` and a linear head),
trained and exported like any zoo model.

With a character tokenizer that marks word edges (``--tokenizer=char --word_boundaries``) its
features are scikit-learn's ``char_wb`` n-grams: every run of 2 to 5 characters inside a word
padded with a space on each side. Each n-gram is hashed into ``tfidf_buckets`` counters with
integer ops, so the exported file still takes the tokenizer's ids and nothing else. Then
sublinear term frequency (1 + log count, a lookup table), inverse document frequency learned
from the training split before training (``learn_statistics``), L2 length normalization and a
linear layer.

Why this model: on Shakespeare scenes (median 5,000 characters, 476 training scenes) a bag of
word-piece embeddings lost 3 points on average to TF-IDF + linear SVM over six play splits;
scikit-learn's own ablation showed the baseline's strength is exactly these character n-grams
with sublinear TF x IDF (README's five-dataset section).

For full-integer int8 the normalization is applied to the class scores, not the features:
``W (x / |x|) = (W x) / |x|``. The unnormalized features (values 0 to ~40) keep their
precision in an int8 tensor, where the unit-length vector's entries (~0.01) would not.
"""
import dataclasses

import numpy as np
import tensorflow as tf
import tf_keras as keras

from slm_tf.models.base import TextClassifier
from slm_tf.models.config import TFIDF_MAX_BUCKETS
from slm_tf.models.layers import _NothingToPrune, serializable

# n-grams hash as polynomials in their token ids modulo a prime (HASH_MODULUS), then into
# buckets: a modulus that is a power of two (the bucket count) used fewer buckets than random
# hashing would (38,307 against 42,743 for 69,215 Shakespeare n-grams in 65,536). State times
# HASH_PRIME plus a token id (< 2**20) stays within int32.
HASH_PRIME = 31337
HASH_MODULUS = 65521  # the largest prime under 2**16
MAX_BUCKETS = TFIDF_MAX_BUCKETS
assert HASH_MODULUS * HASH_PRIME + 2 ** 20 < 2 ** 31
# Counts above this share one table entry (sublinear TF changes by 0.4% per extra count there).
MAX_COUNT = 255
# Sublinear term frequency, 1 + log(count) (0 for none), by count: a lookup table rather than
# tf.math.log, since integer counts index it exactly and a gather is an int8 op where LOG may
# not be.
SUBLINEAR_TF = np.concatenate([[0.0], 1.0 + np.log(np.arange(1, MAX_COUNT + 1))]).astype(
    "float32")
# n-grams in fewer training texts get no weight, as scikit-learn's ``min_df=2`` drops them.
MIN_DOCUMENT_FREQUENCY = 2


@serializable
class HashedNgrams(keras.layers.Layer, _NothingToPrune):
    """``[B, L * len(orders)]`` bucket ids of the n-grams of each order ending at each position,
    ``buckets`` (one past the last bucket) where there is none: the n-gram would start before
    the text, end in padding, or cross a word boundary (a boundary token anywhere but at its
    two ends). ``boundary_ids`` (e.g. ``[CLS]``, ``[SEP]``, ``[SPACE]``) all hash as the
    first of them, so a word at the start of a text gives the same n-grams as elsewhere."""

    def __init__(self, buckets: int, orders=(2, 3, 4, 5), boundary_ids=(), **kwargs):
        super().__init__(**kwargs)
        if not 0 < buckets <= MAX_BUCKETS:
            raise ValueError(f"HashedNgrams: buckets must be in [1, {MAX_BUCKETS}], got {buckets}")
        if not orders or min(orders) < 1:
            raise ValueError(f"HashedNgrams: orders must be positive, got {list(orders)}")
        self.buckets = int(buckets)
        self.orders = sorted(int(n) for n in orders)
        self.boundary_ids = [int(i) for i in boundary_ids]

    def call(self, ids):
        ids = tf.cast(ids, tf.int32)
        boundary = tf.zeros_like(ids, dtype=tf.bool)
        for b in self.boundary_ids:
            boundary = boundary | tf.equal(ids, b)
        if self.boundary_ids:
            ids = tf.where(boundary, tf.constant(self.boundary_ids[0], tf.int32), ids)
        # Boundaries up to and including each position: the interior of the n-gram ending at
        # i of order n (positions i-n+2 .. i-1) is free of them iff seen[i-1] == seen[i-n+1].
        seen = tf.cumsum(tf.cast(boundary, tf.int32), axis=1)
        # Padding only follows the text, so an n-gram is inside it iff its first and last
        # tokens are (from the ids, not the position: a position mask would be folded into
        # the exported file as a constant, 16 KB per order for 16,384 tokens).
        real = tf.cast(tf.not_equal(ids, 0), tf.int32)
        shifted = lambda x, k: tf.pad(x[:, :-k], [[0, 0], [k, 0]]) if k else x
        hashed, out = tf.math.floormod(ids, HASH_MODULUS), []
        for n in range(1, max(self.orders) + 1):
            if n > 1:  # extend the (n-1)-gram ending one position to the left
                hashed = tf.math.floormod(shifted(hashed, 1) * HASH_PRIME + ids, HASH_MODULUS)
            if n not in self.orders:
                continue
            ok = tf.equal(real * shifted(real, n - 1), 1)
            if n > 2:
                ok = ok & tf.equal(shifted(seen, 1), shifted(seen, n - 1))
            out.append(tf.where(ok, tf.math.floormod(hashed, self.buckets), self.buckets))
        return tf.concat(out, axis=1)

    def compute_output_shape(self, input_shape):
        length = input_shape[1]
        return tf.TensorShape([input_shape[0], None if length is None
                               else length * len(self.orders)])

    def get_config(self):
        return {**super().get_config(), "buckets": self.buckets, "orders": self.orders,
                "boundary_ids": self.boundary_ids}


@serializable
class TfIdfFeatures(keras.layers.Layer, _NothingToPrune):
    """``[B, buckets]`` sublinear TF x IDF of hashed n-gram ids (unnormalized): ``(1 + log
    count) * idf`` where the count is positive. ``idf`` is a non-trainable weight set by
    :meth:`learn_idf` from the training texts (scikit-learn's smoothed formula, ``log((1 + n) /
    (1 + df)) + 1``; zero for n-grams in fewer than MIN_DOCUMENT_FREQUENCY texts)."""

    def __init__(self, buckets: int, **kwargs):
        super().__init__(**kwargs)
        self.buckets = int(buckets)

    def build(self, input_shape):
        # Ones until learn_idf: plain sublinear term frequencies.
        self.idf = self.add_weight("idf", shape=(self.buckets,), initializer="ones",
                                   trainable=False)
        super().build(input_shape)

    def counts(self, hashed):
        """``[B, buckets]`` int32 occurrences of each bucket (the ``buckets`` id is dropped)."""
        batch = tf.shape(hashed)[0]
        width = self.buckets + 1
        # scatter_nd sums repeated indices: a count per bucket of the whole batch, flattened.
        # (tf2onnx turns a segment sum into a [buckets x positions] one-hot matrix, 27 GB for
        # a 16k-token text; scatter_nd becomes ONNX's ScatterND, see slm_tf.export.onnx.)
        flat = tf.reshape(hashed + tf.range(batch)[:, tf.newaxis] * width, [-1, 1])
        # The ones are computed from the ids: a constant of ones would be folded into the
        # file at its full length (262 KB for 16,384 tokens x 4 orders).
        ones = tf.cast(tf.greater_equal(flat[:, 0], 0), tf.int32)
        counts = tf.scatter_nd(flat, ones, [batch * width])
        return tf.reshape(counts, [batch, width])[:, :self.buckets]

    def call(self, hashed):
        return tf.gather(SUBLINEAR_TF, tf.minimum(self.counts(hashed), MAX_COUNT)) * self.idf

    def learn_idf(self, hashed_batches) -> int:
        """Sets ``idf`` from batches of hashed ids (one row per training text); returns the
        number of buckets that got a weight."""
        df, n = np.zeros(self.buckets), 0
        for hashed in hashed_batches:
            counts = self.counts(tf.convert_to_tensor(hashed)).numpy()
            df += (counts > 0).sum(axis=0)
            n += counts.shape[0]
        idf = np.where(df >= MIN_DOCUMENT_FREQUENCY, np.log((1 + n) / (1 + df)) + 1, 0.0)
        self.idf.assign(idf.astype("float32"))
        return int((idf > 0).sum())

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.buckets])

    def get_config(self):
        return {**super().get_config(), "buckets": self.buckets}


@serializable
class InverseNorm(keras.layers.Layer, _NothingToPrune):
    """``[B, 1]``: one over each row's L2 norm (rows of zeros: a large finite value)."""

    def call(self, x):
        return tf.math.rsqrt(tf.maximum(tf.reduce_sum(x * x, axis=-1, keepdims=True), 1e-12))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], 1])


@serializable
class Bias(keras.layers.Layer, _NothingToPrune):
    """Adds a learned vector (one value per class): the linear model's intercept, added after
    the scores are scaled."""

    def build(self, input_shape):
        self.bias = self.add_weight("bias", shape=(int(input_shape[-1]),), initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        return x + self.bias


@serializable
class TfIdfClassifier(TextClassifier):
    """Hashed n-grams -> sublinear TF x IDF -> ``logits = (W x) / |x| + b``. Parameters:
    ``buckets x classes`` weights, the IDF vector (fixed) and ``classes`` intercepts."""

    arch = "tfidf"
    word_embeddings = False

    @staticmethod
    def build_graph(ids, vocab_size, num_classes, max_seq_len, cfg):
        layers = keras.layers
        hashed = HashedNgrams(cfg.tfidf_buckets, [int(n) for n in cfg.ngram_orders],
                              [int(i) for i in cfg.boundary_ids], name="ngram_ids")(ids)
        x = TfIdfFeatures(cfg.tfidf_buckets, name="tfidf")(hashed)
        inverse_norm = InverseNorm(name="inverse_norm")(x)
        scores = layers.Dense(num_classes, use_bias=False, name="tfidf_weights")(
            layers.Dropout(cfg.dropout, name="feature_dropout")(x))
        scores = layers.Multiply(name="normalized_scores")([scores, inverse_norm])
        return Bias(name="logits")(scores)

    @staticmethod
    def for_tokenizer(cfg, tokenizer):
        """``cfg`` with the tokenizer's word-boundary ids (``[CLS]``, ``[SEP]`` and, if it has
        one, ``[SPACE]``)."""
        ids = [tokenizer.cls_id, tokenizer.sep_id]
        if getattr(tokenizer, "space_id", None) is not None:
            ids = [tokenizer.space_id] + ids
        return dataclasses.replace(cfg, boundary_ids=[str(i) for i in ids])

    def learn_statistics(self, ids_batches) -> str:
        """Sets the IDF weights from batches of the training split's ids."""
        hashing = self.get_layer("ngram_ids")
        kept = self.get_layer("tfidf").learn_idf(hashing(tf.convert_to_tensor(b))
                                                 for b in ids_batches)
        return f"idf: {kept:,} of {hashing.buckets:,} n-gram buckets occur in 2 or more texts"
