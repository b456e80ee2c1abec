"""Average word embedding (bag of words): MediaPipe Model Maker's baseline text classifier."""
import tf_keras as keras

from slm_tf.models.base import TextClassifier
from slm_tf.models.layers import MaskedPooling, PaddingMask, serializable


@serializable
class BagOfWordsClassifier(TextClassifier):
    """Embedding, masked mean over tokens, one ReLU hidden layer, linear head."""

    arch = "bow"
    default_pooling = "mean"

    @staticmethod
    def build_graph(ids, vocab_size, num_classes, max_seq_len, cfg):
        layers = keras.layers
        mask = PaddingMask(name="padding_mask")(ids)
        x = layers.Embedding(vocab_size, cfg.embedding_dim, name="token_embedding")(ids)
        x = MaskedPooling(cfg.pooling, name="pooling")([x, mask])
        if cfg.hidden_dim:
            x = layers.Dense(cfg.hidden_dim, activation="relu", name="hidden")(x)
        return TextClassifier.classifier_head(x, num_classes, cfg.dropout)
