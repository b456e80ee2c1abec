"""Tokenizers. ``TokenizerConfig`` imports without TensorFlow; every other name
(``build_tokenizer``, ``load_tokenizer``, ``Tokenizer``, ``TOKENIZERS``, ...) loads
:mod:`slm_tf.tokenizers.registry`, and with it TensorFlow, on first use."""
import importlib

from slm_tf.tokenizers.config import TokenizerConfig

__all__ = ["TokenizerConfig", "TOKENIZERS", "Tokenizer", "build_tokenizer", "load_tokenizer"]


def __getattr__(name):
    """Loads the tokenizer registry (TensorFlow) on first use of any name but TokenizerConfig."""
    if name.startswith("__"):
        raise AttributeError(name)
    registry = importlib.import_module("slm_tf.tokenizers.registry")
    try:
        return getattr(registry, name)
    except AttributeError:
        raise AttributeError(f"module 'slm_tf.tokenizers' has no attribute {name!r}") from None
