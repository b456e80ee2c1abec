"""``TextClassifier``: the keras.Model subclass every zoo architecture derives from.

Each architecture builds a functional graph ``ids[int32, B x L] -> logits[float32, B x C]``
in ``build_graph`` and hands it to ``keras.Model.__init__`` (the keras-hub "functional
subclass" pattern): a custom class with its own config that tfmot, the TFLite converter and
tf2onnx still see as a plain functional graph.
"""
import dataclasses
from typing import Dict

import tf_keras as keras

from slm_tf.config import field, non_negative, positive
from slm_tf.models.layers import POOLINGS, serializable

INPUT_NAME = "ids"
OUTPUT_NAME = "logits"


@dataclasses.dataclass
class ModelConfig:
    model: str = field("cnn", "Architecture from the model zoo (gpt, lstm_lm and gru_lm "
                       "are causal language models).",
                       choices=("transformer", "cnn", "bilstm", "bigru", "bow", "bert", "gpt",
                                "lstm_lm", "gru_lm"))
    embedding_dim: int = field(128, "Token embedding width (cnn, bilstm, bigru, bow).",
                               validate=positive, rule="> 0")
    hidden_dim: int = field(128, "Transformer width / recurrent units per direction / bow and "
                            "cnn hidden layer (0 = none for cnn).", validate=non_negative,
                            rule=">= 0")
    num_layers: int = field(2, "Transformer blocks or stacked recurrent layers.",
                            validate=positive, rule="> 0")
    num_heads: int = field(4, "Attention heads (transformer).", validate=positive, rule="> 0")
    ff_dim: int = field(256, "Feed-forward width (transformer).", validate=positive, rule="> 0")
    pooling: str = field("auto", "How token states become one vector; auto picks the "
                         "architecture's usual choice.", choices=("auto",) + POOLINGS)
    dropout: float = field(0.1, "Dropout rate.", validate=lambda x: 0.0 <= x < 1.0,
                           rule="in [0, 1)")
    kernel_sizes: list = field(["3", "4", "5"], "Convolution widths (cnn).")
    num_filters: int = field(128, "Filters per convolution width (cnn).", validate=positive,
                             rule="> 0")
    layer_norm_eps: float = field(1e-6, "LayerNormalization epsilon (transformer, bert; a "
                                  "checkpoint's config.json overrides it).", validate=positive,
                                  rule="> 0")
    init_checkpoint: str = field("", "A local BERT-family checkpoint directory (config.json, "
                                 "model.safetensors, vocab.txt) to start from (model=bert).")


@serializable
class TextClassifier(keras.Model):
    """Base class: subclasses implement ``build_graph(ids, cfg) -> logits``."""

    arch = ""
    default_pooling = "mean"

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
