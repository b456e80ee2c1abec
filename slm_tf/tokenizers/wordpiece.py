"""WordPiece: learned from the training split, or loaded from a BERT ``vocab.txt``."""
import collections
from typing import Iterable, List

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

from slm_tf.errors import UserError
from slm_tf.tokenizers.base import SPECIAL_TOKENS, UNK, Tokenizer
from slm_tf.tokenizers.normalize import pretokenize_py, pretokenize_tf

SUFFIX = "##"
MAX_BYTES_PER_WORD = 100
MAX_RETARGETS = 4


def _truncate(vocab: List[str], size: int, counts: collections.Counter) -> List[str]:
    """At most ``size`` pieces of ``vocab`` when the learner cannot get below it: the reserved
    tokens and single characters (with and without the suffix marker: every word stays
    covered), then the most frequent whole words, then the other pieces in the learner's order."""
    chosen = set(SPECIAL_TOKENS) | {p for p in vocab if len(p.removeprefix(SUFFIX)) == 1}
    if len(chosen) > size:
        raise UserError(f"--vocab_size={size} is smaller than the {len(chosen)} characters "
                        "and special tokens every word needs. Fix: raise --vocab_size.")
    words = sorted((p for p in vocab if p not in chosen and not p.startswith(SUFFIX)),
                   key=lambda p: (-counts[p], p))
    rest = [p for p in vocab if p not in chosen and p.startswith(SUFFIX)]
    keep = chosen | set((words + rest)[:size - len(chosen)])
    return [p for p in vocab if p in keep]


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
        target = vocab_size
        for _ in range(MAX_RETARGETS):
            vocab = learner.learn(counts, vocab_size=target,
                                  reserved_tokens=list(SPECIAL_TOKENS), lower_thresh=min_frequency,
                                  num_iterations=4, max_unique_chars=2000,
                                  include_joiner_token=True, joiner=SUFFIX)
            if len(vocab) <= vocab_size:
                return cls(vocab, lowercase, strip_accents)
            # The learner treats its size as a target, and its search over count thresholds
            # can land far above it (Shakespeare scenes: 18,441 pieces for 13,000), which
            # breaks every size budget built on --vocab_size: aim lower in proportion.
            target = max(1, target * vocab_size // len(vocab))
        return cls(_truncate(vocab, vocab_size, counts), lowercase, strip_accents)
