"""Bidirectional LSTM / GRU classifiers."""
import tf_keras as keras

from slm_tf.models.base import TextClassifier
from slm_tf.models.layers import MaskedPooling, PaddingMask, serializable


def _recurrent_graph(cell, ids, vocab_size, num_classes, cfg):
    x, mask = _recurrent_states(cell, ids, vocab_size, cfg)
    pooled = MaskedPooling(cfg.pooling, name="pooling")([x, mask])
    return TextClassifier.classifier_head(pooled, num_classes, cfg.dropout)


def _recurrent_states(cell, ids, vocab_size, cfg):
    layers = keras.layers
    mask = PaddingMask(name="padding_mask")(ids)
    x = layers.Embedding(vocab_size, cfg.embedding_dim, name="token_embedding")(ids)
    x = layers.Dropout(cfg.dropout, name="embedding_dropout")(x)
    for i in range(cfg.num_layers):
        # No Keras masking: the fused TFLite LSTM op has no mask input. Padding is excluded
        # at pooling time instead.
        x = layers.Bidirectional(cell(cfg.hidden_dim, return_sequences=True), name=f"birnn{i}")(x)
    return x, mask


@serializable
class BiLSTMClassifier(TextClassifier):
    """Embedding, stacked bidirectional LSTMs, masked pooling, linear head."""

    arch = "bilstm"
    default_pooling = "max"

    @staticmethod
    def build_graph(ids, vocab_size, num_classes, max_seq_len, cfg):
        return _recurrent_graph(keras.layers.LSTM, ids, vocab_size, num_classes, cfg)

    @staticmethod
    def encode_tokens(ids, vocab_size, max_seq_len, cfg):
        return _recurrent_states(keras.layers.LSTM, ids, vocab_size, cfg)


@serializable
class BiGRUClassifier(TextClassifier):
    """Embedding, stacked bidirectional GRUs, masked pooling, linear head."""

    arch = "bigru"
    default_pooling = "max"

    @staticmethod
    def build_graph(ids, vocab_size, num_classes, max_seq_len, cfg):
        return _recurrent_graph(keras.layers.GRU, ids, vocab_size, num_classes, cfg)

    @staticmethod
    def encode_tokens(ids, vocab_size, max_seq_len, cfg):
        return _recurrent_states(keras.layers.GRU, ids, vocab_size, cfg)
