"""Kim (2014) CNN: parallel 1-D convolutions of several widths, max over time."""
import tf_keras as keras

from slm_tf.models.base import TextClassifier
from slm_tf.models.layers import (HashedBigrams, MaskedPooling, PaddingMask, ReverseByLength,
                                  ZeroPadding, serializable)


@serializable
class CNNClassifier(TextClassifier):
    """Embedding, one ``Conv1D`` per kernel width, masked max pooling, optional hidden layer."""

    arch = "cnn"
    default_pooling = "max"

    @staticmethod
    def build_graph(ids, vocab_size, num_classes, max_seq_len, cfg):
        layers = keras.layers
        mask = PaddingMask(name="padding_mask")(ids)
        x = layers.Embedding(vocab_size, cfg.embedding_dim, name="token_embedding")(ids)
        x = layers.Dropout(cfg.dropout, name="embedding_dropout")(x)
        pooled = []
        for k in (int(k) for k in cfg.kernel_sizes):
            h = layers.Conv1D(cfg.num_filters, k, padding="same", activation="relu",
                              name=f"conv{k}")(x)
            pooled.append(MaskedPooling(cfg.pooling, name=f"conv{k}_pool")([h, mask]))
        x = pooled[0] if len(pooled) == 1 else layers.Concatenate(name="concat")(pooled)
        if cfg.hidden_dim:
            x = layers.Dropout(cfg.dropout, name="hidden_dropout")(x)
            x = layers.Dense(cfg.hidden_dim, activation="relu", name="hidden")(x)
        return TextClassifier.classifier_head(x, num_classes, cfg.dropout)

    @staticmethod
    def encode_tokens(ids, vocab_size, max_seq_len, cfg):
        """Per token: the concatenated convolution outputs around it (``same`` padding), the
        optional dilated stack (``cfg.dilations``) and hidden layer. The token embedding may
        carry hashed bigram embeddings (``cfg.bigram_buckets``). Padding is zeroed after every
        layer, so a token's states do not depend on how far its sentence is padded."""
        layers = keras.layers
        mask = PaddingMask(name="padding_mask")(ids)
        x = layers.Embedding(vocab_size, cfg.embedding_dim, name="token_embedding")(ids)
        if cfg.bigram_buckets:
            bigrams = HashedBigrams(vocab_size, cfg.bigram_buckets, name="bigram_ids")(ids)
            b = layers.Embedding(cfg.bigram_buckets, max(cfg.embedding_dim // 2, 1),
                                 name="bigram_embedding")(bigrams)
            x = layers.Concatenate(name="token_bigram")([x, b])
        x = ZeroPadding(name="embedding_mask")([x, mask])
        x = layers.Dropout(cfg.dropout, name="embedding_dropout")(x)
        convs = [layers.Conv1D(cfg.num_filters, k, padding="same", activation="relu",
                               name=f"conv{k}")(x) for k in (int(k) for k in cfg.kernel_sizes)]
        x = convs[0] if len(convs) == 1 else layers.Concatenate(name="concat")(convs)
        x = ZeroPadding(name="conv_mask")([x, mask])
        for i, rate in enumerate(int(d) for d in cfg.dilations):
            x = layers.Dropout(cfg.dropout, name=f"dilated{i}_dropout")(x)
            x = layers.Conv1D(cfg.num_filters, 3, padding="same", dilation_rate=rate,
                              activation="relu", name=f"dilated{i}")(x)
            x = ZeroPadding(name=f"dilated{i}_mask")([x, mask])
        if cfg.rnn_units:
            x = _bigru(x, mask, cfg)
        if cfg.hidden_dim:
            x = layers.Dropout(cfg.dropout, name="hidden_dropout")(x)
            x = layers.Dense(cfg.hidden_dim, activation="relu", name="hidden")(x)
        return x, mask


def _bigru(x, mask, cfg):
    """A forward GRU and a GRU over each sentence reversed up to its length (not Keras'
    ``Bidirectional``, whose backward pass would start in the padding), concatenated."""
    layers = keras.layers
    x = layers.Dropout(cfg.dropout, name="gru_dropout")(x)
    forward = layers.GRU(cfg.rnn_units, return_sequences=True, name="gru_forward")(x)
    backward = layers.GRU(cfg.rnn_units, return_sequences=True, name="gru_backward")(
        ReverseByLength(name="gru_reverse_in")([x, mask]))
    backward = ReverseByLength(name="gru_reverse_out")([backward, mask])
    x = layers.Concatenate(name="gru_states")([forward, backward])
    return ZeroPadding(name="gru_mask")([x, mask])
