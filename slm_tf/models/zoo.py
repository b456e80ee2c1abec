"""The model zoo: a registry of named architectures built from a :class:`ModelConfig`
(imported lazily by ``slm_tf.models``, since it loads TensorFlow)."""
import dataclasses
from typing import Dict

from slm_tf.models.bert import BertClassifier
from slm_tf.models.base import INPUT_NAME, OUTPUT_NAME, ModelConfig, TextClassifier
from slm_tf.models.bow import BagOfWordsClassifier
from slm_tf.models.config import MODEL_NAMES
from slm_tf.models.cnn import CNNClassifier
from slm_tf.models.flops import flops_per_example, param_counts
from slm_tf.models.masked_lm import MaskedLM
from slm_tf.models.layers import MaskedPooling, MultiHeadSelfAttention, PaddingMask, PositionEmbedding
from slm_tf.models.rnn import BiGRUClassifier, BiLSTMClassifier
from slm_tf.models.tfidf import TfIdfClassifier
from slm_tf.models.transformer import TransformerClassifier
from slm_tf.models.tagger import TokenClassifier, build_tagger
from slm_tf.models.lm import (LANGUAGE_MODELS, CausalLM, GPTLanguageModel, GRULanguageModel,
                              LSTMLanguageModel, TiedEmbedding, is_language_model)
from slm_tf.registry import Registry

MODELS: Registry[type] = Registry("model", MODEL_NAMES)
for _cls in (TransformerClassifier, CNNClassifier, BiLSTMClassifier, BiGRUClassifier,
             BagOfWordsClassifier, TfIdfClassifier, BertClassifier) + LANGUAGE_MODELS:
    MODELS.register(_cls.arch)(_cls)
MODELS.check_complete()


def build_model(cfg: ModelConfig, vocab_size: int, num_classes: int,
                max_seq_len: int, tokenizer=None) -> TextClassifier:
    """Instantiates the architecture ``cfg.model``; ``tokenizer`` (when given) lets it take
    what it needs from the tokenizer (``for_tokenizer``, e.g. tfidf's word-boundary ids)."""
    cls = MODELS.get(cfg.model)
    if tokenizer is not None and hasattr(cls, "for_tokenizer"):
        cfg = cls.for_tokenizer(cfg, tokenizer)
    return cls(vocab_size, num_classes, max_seq_len, dataclasses.asdict(cfg))


def describe(model: TextClassifier, seq_len: int) -> Dict[str, int]:
    """Parameter counts and FLOPs per example of ``seq_len`` tokens."""
    return {**param_counts(model), "flops_per_example": flops_per_example(model, seq_len)}


__all__ = ["MODELS", "ModelConfig", "TextClassifier", "build_model", "describe", "INPUT_NAME",
           "OUTPUT_NAME", "MaskedPooling", "MultiHeadSelfAttention", "PaddingMask",
           "PositionEmbedding", "TokenClassifier", "build_tagger", "CausalLM",
           "GPTLanguageModel", "LSTMLanguageModel", "GRULanguageModel", "TiedEmbedding",
           "is_language_model", "MaskedLM"]
