"""The tokenizer interface: one object, an in-graph encoder and an identical pure-Python one."""
import abc
import os
from typing import Dict, List, Sequence

import numpy as np

import tensorflow as tf

from slm_tf.errors import CorruptArtifactError, UserError
from slm_tf.io_utils import RERUN_FIX, atomic_path, read_json, write_json

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "tokenizer.json"


class Tokenizer(abc.ABC):
    """Maps text to fixed-length int32 id rows: ``[CLS] tokens... [SEP] [PAD]...``.

    ``tf_encode`` runs inside tf.data / a SavedModel; ``encode`` is the pure-Python reference
    that gives identical ids (what a mobile app reimplements).
    """

    kind = ""

    def __init__(self, vocab: Sequence[str], lowercase: bool = True,
                 strip_accents: bool = True):
        self.vocab = list(vocab)
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.token_to_id = {t: i for i, t in enumerate(self.vocab)}
        missing = [t for t in (PAD, UNK, CLS, SEP) if t not in self.token_to_id]
        if missing:
            raise UserError(f"the vocabulary lacks the special tokens {missing}; add them "
                             f"(by convention {PAD} is id 0)")
        if self.token_to_id[PAD] != 0:
            raise UserError(f"{PAD} must be id 0 in the vocabulary (it is the padding id)")
        self.pad_id = 0
        self.unk_id = self.token_to_id[UNK]
        self.cls_id = self.token_to_id[CLS]
        self.sep_id = self.token_to_id[SEP]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # --- the two encoders ------------------------------------------------------------------
    @abc.abstractmethod
    def tokenize(self, text: str) -> List[str]:
        """Pure-Python tokens of one text (no special tokens)."""

    @abc.abstractmethod
    def tf_token_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """In-graph ragged ``[batch, tokens]`` int32 ids (no special tokens)."""

    def ids(self, text: str) -> List[int]:
        """Pure-Python ids of one text (no special tokens)."""
        return [self.token_to_id.get(t, self.unk_id) for t in self.tokenize(text)]

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (reversible tokenizers only)."""
        raise UserError(f"the {self.kind} tokenizer normalizes text and cannot give it back; "
                        "use --tokenizer=char_exact or sentencepiece for language models")

    def encode(self, texts: Sequence[str], max_seq_len: int) -> np.ndarray:
        """Pure-Python ``[len(texts), max_seq_len]`` int32 ids."""
        out = np.zeros((len(texts), max_seq_len), np.int32)
        for row, text in enumerate(texts):
            ids = [self.token_to_id.get(t, self.unk_id) for t in self.tokenize(text)]
            ids = [self.cls_id] + ids[:max_seq_len - 2] + [self.sep_id]
            out[row, :len(ids)] = ids
        return out

    def tf_encode(self, texts: tf.Tensor, max_seq_len: int) -> tf.Tensor:
        """In-graph ``[batch, max_seq_len]`` int32 ids of a 1-D string tensor."""
        ids = self.tf_token_ids(texts)[:, :max_seq_len - 2]
        batch = ids.nrows()
        cls = tf.fill([batch, 1], tf.constant(self.cls_id, tf.int32))
        sep = tf.fill([batch, 1], tf.constant(self.sep_id, tf.int32))
        ids = tf.concat([cls, tf.cast(ids, tf.int32), sep], axis=1)
        return ids.to_tensor(default_value=self.pad_id, shape=[None, max_seq_len])

    # --- persistence -----------------------------------------------------------------------
    def config(self) -> Dict:
        """Everything (besides the vocabulary) needed to rebuild this tokenizer."""
        return {"type": self.kind, "lowercase": self.lowercase,
                "strip_accents": self.strip_accents, "vocab_file": VOCAB_FILE,
                "vocab_size": self.vocab_size,
                "special_ids": {t: self.token_to_id[t] for t in SPECIAL_TOKENS
                                if t in self.token_to_id}}

    def save(self, directory: str) -> None:
        """Writes ``vocab.txt`` and ``tokenizer.json`` into ``directory`` atomically."""
        os.makedirs(directory, exist_ok=True)
        with atomic_path(os.path.join(directory, VOCAB_FILE)) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("".join(t + "\n" for t in self.vocab))
        write_json(os.path.join(directory, CONFIG_FILE), self.config())


def read_vocab(path: str, fix: str = "give a UTF-8 vocab.txt with one token per line") -> List[str]:
    """One token per line (a BERT ``vocab.txt``)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise CorruptArtifactError(path, f"not UTF-8 text (byte {e.start})", fix) from e
    # Ids are line numbers, so only the trailing newline may be dropped.
    while lines and lines[-1].strip() == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def load_config(directory: str, fix: str = RERUN_FIX) -> Dict:
    """The saved ``tokenizer.json`` of a tokenizer directory."""
    return read_json(os.path.join(directory, CONFIG_FILE), fix)
