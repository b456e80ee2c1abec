"""Reversible tokenizers for language models: ``detokenize(ids_of(text)) == text`` exactly.

``char_exact`` keeps every character (spaces, newlines, case); ``sentencepiece`` is a subword
vocabulary learned from the corpus by the sentencepiece library (identity normalization, byte
fallback, digits split, whitespace kept), encoded in-graph by tensorflow-text's
``SentencepieceTokenizer`` from the same model bytes, so both encoders give identical ids.
"""
import collections
import io
import os
import unicodedata
from typing import Dict, Iterable, Iterator, List, Sequence

import tensorflow as tf

from slm_tf.errors import CorruptArtifactError, UserError
from slm_tf.io_utils import RERUN_FIX, atomic_path, write_json
from slm_tf.tokenizers.base import (CLS, CONFIG_FILE, PAD, SEP, SPECIAL_TOKENS, UNK, VOCAB_FILE,
                                    Tokenizer)

# Documents are separated by [SEP]: the end-of-document token of packed LM blocks.
EOD = SEP
UNKNOWN_CHAR = "\ufffd"


def escape_token(token: str) -> str:
    """A one-line spelling of a token for vocab.txt: whitespace, control characters and the
    backslash become ``\\uXXXX`` (a line per token cannot hold a newline)."""
    return "".join(f"\\u{ord(c):04x}" if c == "\\" or c.isspace() or
                   unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Zs") else c
                   for c in token)


def unescape_token(token: str) -> str:
    """Inverse of :func:`escape_token`."""
    out, i = [], 0
    while i < len(token):
        if token[i] == "\\" and token[i + 1:i + 2] == "u":
            out.append(chr(int(token[i + 2:i + 6], 16)))
            i += 6
        else:
            out.append(token[i])
            i += 1
    return "".join(out)


class ExactCharTokenizer(Tokenizer):
    """One token per character with no normalization at all: case, spaces, tabs and newlines
    are tokens. The vocabulary holds escaped spellings (see :func:`escape_token`)."""

    kind = "char_exact"

    def __init__(self, vocab, lowercase: bool = False, strip_accents: bool = False):
        super().__init__(vocab, False, False)
        self.chars = [t if t in SPECIAL_TOKENS else unescape_token(t) for t in self.vocab]
        self._char_to_id = {c: i for i, c in enumerate(self.chars) if self.vocab[i]
                            not in SPECIAL_TOKENS}
        self._table = None

    def tokenize(self, text: str) -> List[str]:
        return [escape_token(c) for c in text]

    def ids(self, text: str) -> List[int]:
        """Pure-Python ids of one text (no special tokens)."""
        return [self._char_to_id.get(c, self.unk_id) for c in text]

    def detokenize(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; special tokens vanish, unknown characters become U+FFFD."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.unk_id:
                out.append(UNKNOWN_CHAR)
            elif 0 <= i < self.vocab_size and self.vocab[i] not in SPECIAL_TOKENS:
                out.append(self.chars[i])
        return "".join(out)

    def tf_token_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
        if self._table is None:
            keys = [c for c in self.chars if c not in SPECIAL_TOKENS]
            with tf.init_scope():
                self._table = tf.lookup.StaticHashTable(
                    tf.lookup.KeyValueTensorInitializer(
                        tf.constant(keys), tf.constant([self._char_to_id[c] for c in keys],
                                                       tf.int32)),
                    default_value=self.unk_id)
        chars = tf.strings.unicode_split(texts, "UTF-8")
        return tf.ragged.map_flat_values(self._table.lookup, chars)

    @classmethod
    def learn(cls, texts: Iterable[str], vocab_size: int, lowercase: bool = False,
              strip_accents: bool = False, min_frequency: int = 1) -> "ExactCharTokenizer":
        """Keeps the ``vocab_size`` most frequent characters (ties broken by code point)."""
        counts = collections.Counter()
        for text in texts:
            counts.update(text)
        ranked = sorted((c for c, n in counts.items() if n >= min_frequency),
                        key=lambda c: (-counts[c], c))
        kept = ranked[:max(0, vocab_size - len(SPECIAL_TOKENS))]
        return cls(list(SPECIAL_TOKENS) + [escape_token(c) for c in kept])


MODEL_FILE = "sentencepiece.model"


class SentencePieceTokenizer(Tokenizer):
    """A unigram (or BPE) subword vocabulary learned by sentencepiece; reversible thanks to
    identity normalization, no dummy prefix, kept whitespace and byte fallback (an unseen
    character becomes its UTF-8 bytes, never [UNK])."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm
        self.model_proto = model_proto
        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)
        pieces = [self.processor.id_to_piece(i) for i in range(self.processor.get_piece_size())]
        super().__init__(pieces, False, False)
        self._tf = None

    def tokenize(self, text: str) -> List[str]:
        return self.processor.encode(text, out_type=str)

    def ids(self, text: str) -> List[int]:
        """Pure-Python ids of one text (no special tokens)."""
        return self.processor.encode(text)

    def detokenize(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; special tokens vanish."""
        return self.processor.decode([int(i) for i in ids if int(i) > self.sep_id])

    def tf_token_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
        if self._tf is None:
            import tensorflow_text as tf_text
            with tf.init_scope():
                self._tf = tf_text.SentencepieceTokenizer(model=self.model_proto,
                                                          out_type=tf.int32)
        return self._tf.tokenize(texts)

    @classmethod
    def learn(cls, texts: Iterable[str], vocab_size: int, lowercase: bool = False,
              strip_accents: bool = False, min_frequency: int = 1,
              model_type: str = "unigram") -> "SentencePieceTokenizer":
        """Learns ``vocab_size`` pieces from the lines of ``texts``."""
        import sentencepiece as spm
        texts = list(texts)
        chars = len(set("".join(texts[:1000])))
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=_training_lines(texts), model_writer=model,
                vocab_size=vocab_size, model_type=model_type, byte_fallback=True,
                split_digits=True, normalization_rule_name="identity", add_dummy_prefix=False,
                remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
                user_defined_symbols=["\n", "\t"], character_coverage=0.9995,
                pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece=PAD, unk_piece=UNK,
                bos_piece=CLS, eos_piece=SEP, minloglevel=2, input_sentence_size=2_000_000,
                shuffle_input_sentence=True, hard_vocab_limit=False)
        except RuntimeError as e:
            raise UserError(f"sentencepiece could not learn {vocab_size} pieces from "
                            f"{len(texts)} documents ({chars}+ distinct characters): {e}. Fix: "
                            "a vocabulary holds the 256 byte pieces plus every distinct character, so "
                            "raise --vocab_size (or, when it is too large for the text, lower "
                            "it).") from e
        return cls(model.getvalue())

    def config(self) -> Dict:
        return {**super().config(), "model_file": MODEL_FILE}

    def save(self, directory: str) -> None:
        """Writes the sentencepiece model, an escaped vocab.txt (for reading) and
        tokenizer.json atomically."""
        os.makedirs(directory, exist_ok=True)
        with atomic_path(os.path.join(directory, MODEL_FILE)) as tmp:
            with open(tmp, "wb") as f:
                f.write(self.model_proto)
        with atomic_path(os.path.join(directory, VOCAB_FILE)) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("".join(escape_token(t) + "\n" for t in self.vocab))
        write_json(os.path.join(directory, CONFIG_FILE), self.config())

    @classmethod
    def load_directory(cls, directory: str, fix: str = RERUN_FIX) -> "SentencePieceTokenizer":
        """Reads a tokenizer written by :meth:`save`."""
        path = os.path.join(directory, MODEL_FILE)
        if not os.path.isfile(path):
            raise UserError(f"{path}: missing. Fix: {fix}.")
        with open(path, "rb") as f:
            proto = f.read()
        try:
            return cls(proto)
        except (RuntimeError, OSError) as e:
            raise CorruptArtifactError(path, f"not a sentencepiece model ({e})", fix) from e


def _training_lines(texts: Sequence[str]) -> Iterator[str]:
    # sentencepiece learns from "sentences"; lines with their newline keep "\n" in the stats.
    for text in texts:
        yield from text.splitlines(keepends=True)
