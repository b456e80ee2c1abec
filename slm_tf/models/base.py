"""``TextClassifier``: the keras.Model subclass every zoo architecture derives from.

Each architecture builds a functional graph ``ids[int32, B x L] -> logits[float32, B x C]``
in ``build_graph`` and hands it to ``keras.Model.__init__`` (the keras-hub "functional
subclass" pattern): a custom class with its own config that tfmot, the TFLite converter and
tf2onnx still see as a plain functional graph.
"""
import dataclasses
from typing import Dict

import tf_keras as keras

from slm_tf.models.config import ModelConfig  # noqa: F401  (re-exported: its old home)
from slm_tf.models.layers import serializable

INPUT_NAME = "ids"
OUTPUT_NAME = "logits"


@serializable
class TextClassifier(keras.Model):
    """Base class: subclasses implement ``build_graph(ids, cfg) -> logits``."""

    arch = ""
    default_pooling = "mean"
    # Whether it has a word-embedding table (distillation's augmentation draws neighbours there).
    word_embeddings = True

    def __init__(self, vocab_size: int, num_classes: int, max_seq_len: int, config: Dict,
                 **kwargs):
        cfg = ModelConfig(**config)
        if cfg.pooling == "auto":
            cfg.pooling = self.default_pooling
        ids = keras.Input(shape=(None,), dtype="int32", name=INPUT_NAME)
        logits = self.build_graph(ids, vocab_size, num_classes, max_seq_len, cfg)
        kwargs.setdefault("name", self.arch)
        super().__init__(inputs=ids, outputs=logits, **kwargs)
        self.vocab_size = vocab_size
        self.num_classes = num_classes
        self.max_seq_len = max_seq_len
        self.model_config = dataclasses.asdict(cfg)

    @staticmethod
    def build_graph(ids, vocab_size, num_classes, max_seq_len, cfg: ModelConfig):
        raise NotImplementedError

    @staticmethod
    def encode_tokens(ids, vocab_size, max_seq_len, cfg: ModelConfig):
        """``(states [B, L, H], mask [B, L])``: the encoder's per-token states before pooling
        (token classification builds on them); None for an architecture without them."""
        return None

    @staticmethod
    def classifier_head(pooled, num_classes: int, dropout: float):
        x = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
        return keras.layers.Dense(num_classes, name=OUTPUT_NAME)(x)

    def get_config(self):
        # Keras wraps list attributes in trackable ListWrappers; hand out plain lists so
        # ``cls.from_config(model.get_config())`` works in memory, not only through JSON.
        config = {k: list(v) if isinstance(v, list) else v for k, v in self.model_config.items()}
        return {"vocab_size": self.vocab_size, "num_classes": self.num_classes,
                "max_seq_len": self.max_seq_len, "config": config, "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)
