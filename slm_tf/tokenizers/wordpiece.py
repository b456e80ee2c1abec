"""WordPiece: learned from the training split, or loaded from a BERT ``vocab.txt``."""
import collections
from typing import Iterable, List

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

from slm_tf.tokenizers.base import SPECIAL_TOKENS, UNK, Tokenizer
from slm_tf.tokenizers.normalize import pretokenize_py, pretokenize_tf

SUFFIX = "##"
MAX_BYTES_PER_WORD = 100


class WordPieceTokenizer(Tokenizer):
    """Greedy longest-match-first WordPiece over BERT-style pre-tokenized words.

    A word that cannot be covered by vocabulary pieces, or is longer than 100 UTF-8 bytes,
    becomes a single ``[UNK]`` (the rule BERT and tf_text.FastWordpieceTokenizer share).
    """

    kind = "wordpiece"

    def __init__(self, vocab, lowercase: bool = True, strip_accents: bool = True):
        super().__init__(vocab, lowercase, strip_accents)
        self._tf_tokenizer = None

    def _pieces(self, word: str) -> List[str]:
        if len(word.encode("utf-8")) > MAX_BYTES_PER_WORD:
            return [UNK]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else SUFFIX + word[start:end]
                if piece in self.token_to_id:
                    break
                end -= 1
            if end == start:
                return [UNK]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> List[str]:
        words = pretokenize_py(text, self.lowercase, self.strip_accents)
        return [p for w in words for p in self._pieces(w)]

    def tf_token_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
        if self._tf_tokenizer is None:
            # Built eagerly (init_scope), so every tf.data / tf.function graph can share it.
            with tf.init_scope():
                self._tf_tokenizer = self._make_tf_tokenizer()
        words = pretokenize_tf(texts, self.lowercase, self.strip_accents)
        return self._tf_tokenizer.tokenize(words).merge_dims(-2, -1)

    def _make_tf_tokenizer(self):
        return tf_text.FastWordpieceTokenizer(
                vocab=self.vocab, suffix_indicator=SUFFIX, max_bytes_per_word=MAX_BYTES_PER_WORD,
                token_out_type=tf.int32, unknown_token=UNK, no_pretokenization=True,
                support_detokenization=False)

    def config(self):
        cfg = super().config()
        cfg.update(suffix_indicator=SUFFIX, max_bytes_per_word=MAX_BYTES_PER_WORD)
        return cfg

    @classmethod
    def learn(cls, texts: Iterable[str], vocab_size: int, lowercase: bool = True,
              strip_accents: bool = True, min_frequency: int = 2) -> "WordPieceTokenizer":
        """Learns a vocabulary of at most ``vocab_size`` pieces from ``texts``.

        Words come from our own pre-tokenizer, so the vocabulary matches how text is split at
        inference; the piece selection is tensorflow-text's WordPiece learner.
        """
        counts = collections.Counter()
        for text in texts:
            counts.update(pretokenize_py(text, lowercase, strip_accents))
        vocab = learner.learn(counts, vocab_size=vocab_size, reserved_tokens=list(SPECIAL_TOKENS),
                              lower_thresh=min_frequency, num_iterations=4, max_unique_chars=2000,
                              include_joiner_token=True, joiner=SUFFIX)
        return cls(vocab, lowercase, strip_accents)
