"""Character tokenizer: every non-space character is a token (CJK text, any script); with a
``[SPACE]`` token in its vocabulary, also one token between words (word edges for character
n-gram models such as ``tfidf``)."""
import collections
from typing import Iterable, List

import tensorflow as tf

from slm_tf.tokenizers.base import SPECIAL_TOKENS, Tokenizer
from slm_tf.tokenizers.normalize import normalize_py, normalize_tf


SPACE = "[SPACE]"


class CharTokenizer(Tokenizer):
    """One token per character after normalization; unknown characters map to ``[UNK]``.
    Spaces are dropped, unless the vocabulary holds ``[SPACE]``: then each run of spaces
    between two words becomes one ``[SPACE]`` (none at either end)."""

    kind = "char"

    def __init__(self, vocab, lowercase: bool = True, strip_accents: bool = False):
        super().__init__(vocab, lowercase, strip_accents)
        self.space_id = self.token_to_id.get(SPACE)
        self._table = None

    def tokenize(self, text: str) -> List[str]:
        text = normalize_py(text, self.lowercase, self.strip_accents)
        if self.space_id is None:
            return [c for c in text if c != " "]
        tokens = []
        for word in (w for w in text.split(" ") if w):  # as BUILD.md's steps say
            tokens.extend(([SPACE] if tokens else []) + list(word))
        return tokens

    def config(self):
        return {**super().config(), "word_boundaries": self.space_id is not None}

    def tf_token_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
        if self._table is None:
            keys, values = list(self.vocab), list(range(self.vocab_size))
            if self.space_id is not None:  # a space character is the [SPACE] token
                keys, values = keys + [" "], values + [self.space_id]
            # Built eagerly (init_scope), so every tf.data / tf.function graph can share it.
            with tf.init_scope():
                self._table = tf.lookup.StaticHashTable(
                    tf.lookup.KeyValueTensorInitializer(
                        tf.constant(keys), tf.constant(values, tf.int32)),
                    default_value=self.unk_id)
        text = normalize_tf(texts, self.lowercase, self.strip_accents)
        if self.space_id is not None:
            text = tf.strings.strip(tf.strings.regex_replace(text, " +", " "))
        chars = tf.strings.unicode_split(text, "UTF-8")
        if self.space_id is None:
            chars = tf.ragged.boolean_mask(chars, chars != " ")
        return tf.ragged.map_flat_values(self._table.lookup, chars)

    @classmethod
    def learn(cls, texts: Iterable[str], vocab_size: int, lowercase: bool = True,
              strip_accents: bool = False, min_frequency: int = 2,
              word_boundaries: bool = False) -> "CharTokenizer":
        """Keeps the ``vocab_size`` most frequent characters (ties broken by code point);
        ``word_boundaries`` adds ``[SPACE]`` right after the special tokens."""
        counts = collections.Counter()
        for text in texts:
            counts.update(c for c in normalize_py(text, lowercase, strip_accents) if c != " ")
        ranked = sorted((c for c, n in counts.items() if n >= min_frequency),
                        key=lambda c: (-counts[c], c))
        specials = list(SPECIAL_TOKENS) + ([SPACE] if word_boundaries else [])
        vocab = specials + ranked[:max(0, vocab_size - len(specials))]
        return cls(vocab, lowercase, strip_accents)
