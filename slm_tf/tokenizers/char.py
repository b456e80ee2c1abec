"""Character tokenizer: every non-space character is a token (CJK text, any script)."""
import collections
from typing import Iterable, List

import tensorflow as tf

from slm_tf.tokenizers.base import SPECIAL_TOKENS, Tokenizer
from slm_tf.tokenizers.normalize import normalize_py, normalize_tf


class CharTokenizer(Tokenizer):
    """One token per character after normalization; unknown characters map to ``[UNK]``."""

    kind = "char"

    def __init__(self, vocab, lowercase: bool = True, strip_accents: bool = False):
        super().__init__(vocab, lowercase, strip_accents)
        self._table = None

    def tokenize(self, text: str) -> List[str]:
        return [c for c in normalize_py(text, self.lowercase, self.strip_accents) if c != " "]

    def tf_token_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
        if self._table is None:
            # Built eagerly (init_scope), so every tf.data / tf.function graph can share it.
            with tf.init_scope():
                self._table = tf.lookup.StaticHashTable(
                    tf.lookup.KeyValueTensorInitializer(
                        tf.constant(self.vocab), tf.range(self.vocab_size, dtype=tf.int32)),
                    default_value=self.unk_id)
        chars = tf.strings.unicode_split(normalize_tf(texts, self.lowercase, self.strip_accents),
                                         "UTF-8")
        chars = tf.ragged.boolean_mask(chars, chars != " ")
        return tf.ragged.map_flat_values(self._table.lookup, chars)

    @classmethod
    def learn(cls, texts: Iterable[str], vocab_size: int, lowercase: bool = True,
              strip_accents: bool = False, min_frequency: int = 2) -> "CharTokenizer":
        """Keeps the ``vocab_size`` most frequent characters (ties broken by code point)."""
        counts = collections.Counter()
        for text in texts:
            counts.update(c for c in normalize_py(text, lowercase, strip_accents) if c != " ")
        ranked = sorted((c for c, n in counts.items() if n >= min_frequency),
                        key=lambda c: (-counts[c], c))
        vocab = list(SPECIAL_TOKENS) + ranked[:max(0, vocab_size - len(SPECIAL_TOKENS))]
        return cls(vocab, lowercase, strip_accents)
