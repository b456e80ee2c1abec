"""The model zoo. ``ModelConfig`` imports without TensorFlow; every other name (``MODELS``,
``build_model``, the layers, ...) loads :mod:`slm_tf.models.zoo`, and with it TensorFlow and
every architecture's Keras registration, on first use."""
import importlib

from slm_tf.models.config import POOLINGS, ModelConfig


def __getattr__(name):
    """Loads the zoo (TensorFlow) on first use of any name other than ModelConfig."""
    if name.startswith("__"):
        raise AttributeError(name)
    zoo = importlib.import_module("slm_tf.models.zoo")
    try:
        return getattr(zoo, name)
    except AttributeError:
        raise AttributeError(f"module 'slm_tf.models' has no attribute {name!r}") from None


__all__ = ["MODELS", "ModelConfig", "POOLINGS", "TextClassifier", "build_model", "describe",
           "INPUT_NAME", "OUTPUT_NAME", "MaskedPooling", "MultiHeadSelfAttention", "PaddingMask",
           "PositionEmbedding", "TokenClassifier", "build_tagger", "CausalLM",
           "GPTLanguageModel", "LSTMLanguageModel", "GRULanguageModel", "TiedEmbedding",
           "is_language_model"]
