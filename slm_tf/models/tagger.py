"""``TokenClassifier``: a zoo encoder's per-token states, a per-token Dense head and an
optional CRF — the token-classification (named entity) model.

Built like ``TextClassifier`` (a functional graph handed to ``keras.Model.__init__``), so the
exporters, tfmot and tf2onnx see a plain graph ``ids[B, L] -> logits[B, L, tags]``. With a CRF
the logits are the CRF's emissions; its transition weights live in the ``crf`` layer and
decoding is a separate step (:mod:`slm_tf.models.crf`).
"""
import dataclasses
from typing import Dict

import tf_keras as keras

from slm_tf.errors import UserError
from slm_tf.models.base import INPUT_NAME, OUTPUT_NAME, ModelConfig
from slm_tf.models.crf import CRF
from slm_tf.models.layers import serializable

CRF_LAYER = "crf"


@serializable
class TokenClassifier(keras.Model):
    """Per-token tag logits over any zoo encoder that exposes ``encode_tokens``."""

    def __init__(self, vocab_size: int, num_tags: int, max_seq_len: int, config: Dict,
                 **kwargs):
        from slm_tf.models import MODELS  # the zoo imports this module
        cfg = ModelConfig(**config)
        encoder = MODELS.get(cfg.model)
        ids = keras.Input(shape=(None,), dtype="int32", name=INPUT_NAME)
        encoded = encoder.encode_tokens(ids, vocab_size, max_seq_len, cfg)
        if encoded is None:
            raise UserError(f"the {cfg.model!r} architecture has no per-token states (it pools "
                            "from the start); choose transformer, bert, cnn, bilstm or bigru "
                            "for token classification")
        states, _ = encoded
        x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(states)
        logits = keras.layers.Dense(num_tags, name=OUTPUT_NAME)(x)
        if cfg.crf:
            logits = CRF(num_tags, name=CRF_LAYER)(logits)
        kwargs.setdefault("name", f"{cfg.model}_tagger")
        super().__init__(inputs=ids, outputs=logits, **kwargs)
        self.vocab_size = vocab_size
        self.num_tags = num_tags
        self.max_seq_len = max_seq_len
        self.model_config = dataclasses.asdict(cfg)

    @property
    def crf(self):
        """The CRF layer, or None for a softmax head."""
        return self.get_layer(CRF_LAYER) if self.model_config["crf"] else None

    def get_config(self):
        config = {k: list(v) if isinstance(v, list) else v for k, v in self.model_config.items()}
        return {"vocab_size": self.vocab_size, "num_tags": self.num_tags,
                "max_seq_len": self.max_seq_len, "config": config, "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


def build_tagger(cfg: ModelConfig, vocab_size: int, num_tags: int,
                 max_seq_len: int) -> TokenClassifier:
    """A token classifier over the zoo encoder ``cfg.model`` (with a CRF when ``cfg.crf``)."""
    return TokenClassifier(vocab_size, num_tags, max_seq_len, dataclasses.asdict(cfg))
