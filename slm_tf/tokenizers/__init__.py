"""Tokenizers. ``TokenizerConfig`` imports without TensorFlow; every other name
(``build_tokenizer``, ``load_tokenizer``, ``Tokenizer``, ``TOKENIZERS``, ...) loads
:mod:`slm_tf.tokenizers.registry`, and with it TensorFlow, on first use."""
from slm_tf.lazy import forward_to

from slm_tf.tokenizers.config import TokenizerConfig

__all__ = ["TokenizerConfig", "TOKENIZERS", "Tokenizer", "build_tokenizer", "load_tokenizer"]


__getattr__ = forward_to(__name__, "slm_tf.tokenizers.registry")
