"""Average word embedding (bag of words): MediaPipe Model Maker's baseline text classifier;
with ``bigram_buckets`` a fastText-style bag of token and hashed token-bigram embeddings."""
import tf_keras as keras

from slm_tf.models.base import TextClassifier
from slm_tf.models.layers import HashedBigrams, MaskedPooling, PaddingMask, serializable


@serializable
class BagOfWordsClassifier(TextClassifier):
    """Embedding, masked mean over tokens (and, with ``cfg.bigram_buckets``, over hashed
    bigrams of neighbouring tokens), optional ReLU hidden layer, linear head. Its cost is one
    embedding lookup per token, so it reads a whole long document where a CNN must truncate."""

    arch = "bow"
    default_pooling = "mean"

    @staticmethod
    def build_graph(ids, vocab_size, num_classes, max_seq_len, cfg):
        layers = keras.layers
        mask = PaddingMask(name="padding_mask")(ids)
        x = layers.Embedding(vocab_size, cfg.embedding_dim, name="token_embedding")(ids)
        if cfg.bigram_buckets:
            # Bigrams are hashed from the ids inside the graph (integer ops only), so the
            # exported model still takes the tokenizer's ids and nothing else. Pooling the
            # sequence of tokens followed by the sequence of bigrams averages both kinds.
            bigrams = HashedBigrams(vocab_size, cfg.bigram_buckets, name="bigram_ids")(ids)
            b = layers.Embedding(cfg.bigram_buckets, cfg.embedding_dim,
                                 name="bigram_embedding")(bigrams)
            x = layers.Concatenate(axis=1, name="tokens_and_bigrams")([x, b])
            mask = layers.Concatenate(axis=1, name="tokens_and_bigrams_mask")([mask, mask])
        if cfg.trigram_buckets:
            # A table of their own: trigrams hashed into the bigram rows collided with them
            # and lost on the Chinese reviews' validation split (0.833 against 0.843).
            trigrams = HashedBigrams(vocab_size, cfg.trigram_buckets, order=3,
                                     name="trigram_ids")(ids)
            t = layers.Embedding(cfg.trigram_buckets, cfg.embedding_dim,
                                 name="trigram_embedding")(trigrams)
            token_mask = PaddingMask(name="trigram_mask")(ids)
            x = layers.Concatenate(axis=1, name="with_trigrams")([x, t])
            mask = layers.Concatenate(axis=1, name="with_trigrams_mask")([mask, token_mask])
        x = MaskedPooling(cfg.pooling, name="pooling")([x, mask])
        if cfg.hidden_dim:
            x = layers.Dense(cfg.hidden_dim, activation="relu", name="hidden")(x)
        return TextClassifier.classifier_head(x, num_classes, cfg.dropout)
