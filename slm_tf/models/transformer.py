"""Transformer encoder classifier (pre-LayerNorm, learned positions)."""
import tf_keras as keras

from slm_tf.models.base import TextClassifier
from slm_tf.models.layers import (MaskedPooling, MultiHeadSelfAttention, PaddingMask,
                                  PositionEmbedding, serializable)


@serializable
class TransformerClassifier(TextClassifier):
    """Token + position embeddings, ``num_layers`` pre-LN blocks, pooling, linear head."""

    arch = "transformer"
    default_pooling = "mean"

    @staticmethod
    def build_graph(ids, vocab_size, num_classes, max_seq_len, cfg):
        x, mask = TransformerClassifier.encode_tokens(ids, vocab_size, max_seq_len, cfg)
        pooled = MaskedPooling(cfg.pooling, name="pooling")([x, mask])
        return TextClassifier.classifier_head(pooled, num_classes, cfg.dropout)

    @staticmethod
    def encode_tokens(ids, vocab_size, max_seq_len, cfg):
        layers = keras.layers
        mask = PaddingMask(name="padding_mask")(ids)
        tokens = layers.Embedding(vocab_size, cfg.hidden_dim, name="token_embedding")(ids)
        positions = PositionEmbedding(max_seq_len, name="position_embedding")(tokens)
        x = layers.Add(name="embedding_add")([tokens, positions])
        x = layers.Dropout(cfg.dropout, name="embedding_dropout")(x)
        for i in range(cfg.num_layers):
            x = pre_ln_block(x, mask, i, cfg)
        x = layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name="final_norm")(x)
        return x, mask


def pre_ln_block(x, mask, i: int, cfg, **attention_options):
    """Block ``i`` of a pre-LayerNorm transformer (attention, then feed-forward, each with a
    residual), shared by the encoder here and the causal LM (``causal=True, rotary=True``)."""
    layers = keras.layers
    h = layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=f"block{i}_attention_norm")(x)
    h = MultiHeadSelfAttention(cfg.num_heads, cfg.dropout, name=f"block{i}_attention",
                               **attention_options)([h, mask])
    h = layers.Dropout(cfg.dropout, name=f"block{i}_attention_dropout")(h)
    x = layers.Add(name=f"block{i}_attention_residual")([x, h])
    h = layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=f"block{i}_ffn_norm")(x)
    h = layers.Dense(cfg.ff_dim, activation="gelu", name=f"block{i}_ffn_in")(h)
    h = layers.Dense(cfg.hidden_dim, name=f"block{i}_ffn_out")(h)
    h = layers.Dropout(cfg.dropout, name=f"block{i}_ffn_dropout")(h)
    return layers.Add(name=f"block{i}_ffn_residual")([x, h])
