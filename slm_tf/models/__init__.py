"""The model zoo. ``ModelConfig`` imports without TensorFlow; every other name (``MODELS``,
``build_model``, the layers, ...) loads :mod:`slm_tf.models.zoo`, and with it TensorFlow and
every architecture's Keras registration, on first use."""
from slm_tf.lazy import forward_to

from slm_tf.models.config import POOLINGS, ModelConfig


__getattr__ = forward_to(__name__, "slm_tf.models.zoo")


__all__ = ["MODELS", "ModelConfig", "POOLINGS", "TextClassifier", "build_model", "describe",
           "INPUT_NAME", "OUTPUT_NAME", "MaskedPooling", "MultiHeadSelfAttention", "PaddingMask",
           "PositionEmbedding", "TokenClassifier", "build_tagger", "CausalLM",
           "GPTLanguageModel", "LSTMLanguageModel", "GRULanguageModel", "TiedEmbedding",
           "is_language_model", "MaskedLM"]
