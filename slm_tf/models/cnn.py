"""Kim (2014) CNN: parallel 1-D convolutions of several widths, max over time."""
import tf_keras as keras

from slm_tf.models.base import TextClassifier
from slm_tf.models.layers import MaskedPooling, PaddingMask, serializable


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
        """Per token: the concatenated convolution outputs around it (``same`` padding), then
        the optional hidden layer."""
        layers = keras.layers
        mask = PaddingMask(name="padding_mask")(ids)
        x = layers.Embedding(vocab_size, cfg.embedding_dim, name="token_embedding")(ids)
        x = layers.Dropout(cfg.dropout, name="embedding_dropout")(x)
        convs = [layers.Conv1D(cfg.num_filters, k, padding="same", activation="relu",
                               name=f"conv{k}")(x) for k in (int(k) for k in cfg.kernel_sizes)]
        x = convs[0] if len(convs) == 1 else layers.Concatenate(name="concat")(convs)
        if cfg.hidden_dim:
            x = layers.Dropout(cfg.dropout, name="hidden_dropout")(x)
            x = layers.Dense(cfg.hidden_dim, activation="relu", name="hidden")(x)
        return x, mask
