"""Tokenizers: a registry of learnable tokenizers plus loading a saved or BERT vocabulary
(imported lazily by ``slm_tf.tokenizers``, since it loads TensorFlow)."""
import os
from typing import Iterable

from slm_tf.errors import CorruptArtifactError, UserError
from slm_tf.io_utils import RERUN_FIX
from slm_tf.registry import Registry
from slm_tf.tokenizers.config import TOKENIZER_NAMES, TokenizerConfig
from slm_tf.tokenizers.base import (CONFIG_FILE, PAD, SPECIAL_TOKENS, UNK, Tokenizer, load_config,
                                    read_vocab)
from slm_tf.tokenizers.char import CharTokenizer
from slm_tf.tokenizers.reversible import EOD, ExactCharTokenizer, SentencePieceTokenizer
from slm_tf.tokenizers.wordpiece import WordPieceTokenizer

TOKENIZERS: Registry[type] = Registry("tokenizer", TOKENIZER_NAMES)
TOKENIZERS.register("wordpiece")(WordPieceTokenizer)
TOKENIZERS.register("char")(CharTokenizer)
TOKENIZERS.register("char_exact")(ExactCharTokenizer)
TOKENIZERS.register("sentencepiece")(SentencePieceTokenizer)
TOKENIZERS.check_complete()


def build_tokenizer(cfg: TokenizerConfig, train_texts: Iterable[str]) -> Tokenizer:
    """Loads ``cfg.vocab_file`` or learns the configured tokenizer from ``train_texts``."""
    cls = TOKENIZERS.get(cfg.tokenizer)
    if cfg.vocab_file:
        if not os.path.isfile(cfg.vocab_file):
            raise UserError(f"{cfg.vocab_file}: no such vocabulary file. Fix: check "
                                    "--vocab_file (one token per line, a BERT vocab.txt).")
        return cls(read_vocab(cfg.vocab_file), cfg.lowercase, cfg.strip_accents)
    extra = {}
    if cfg.word_boundaries:
        if cfg.tokenizer != "char":
            raise UserError(f"--word_boundaries is a char tokenizer option, not "
                            f"{cfg.tokenizer}'s. Fix: add --tokenizer=char or drop "
                            "--word_boundaries.")
        extra["word_boundaries"] = True
    return cls.learn(train_texts, cfg.vocab_size, lowercase=cfg.lowercase,
                     strip_accents=cfg.strip_accents, min_frequency=cfg.min_frequency, **extra)


def load_tokenizer(directory: str, fix: str = RERUN_FIX) -> Tokenizer:
    """Rebuilds a tokenizer saved with :meth:`Tokenizer.save`; a damaged one raises a one-line
    :class:`CorruptArtifactError` naming the file and ``fix``."""
    config_path = os.path.join(directory, CONFIG_FILE)
    cfg = load_config(directory, fix)
    try:
        kind, vocab_file = cfg["type"], cfg["vocab_file"]
        lowercase, strip_accents = cfg["lowercase"], cfg["strip_accents"]
    except (KeyError, TypeError) as e:
        raise CorruptArtifactError(config_path, f"lacks the setting {e}", fix) from e
    if kind not in TOKENIZERS:
        raise CorruptArtifactError(config_path, f"unknown tokenizer type {kind!r}", fix)
    if hasattr(TOKENIZERS.get(kind), "load_directory"):  # a model file, not a vocabulary
        return TOKENIZERS.get(kind).load_directory(directory, fix)
    vocab_path = os.path.join(directory, str(vocab_file))
    if not os.path.isfile(vocab_path):
        raise UserError(f"{vocab_path}: missing (named by {config_path}). Fix: {fix}.")
    vocab = read_vocab(vocab_path, fix)
    # A truncated vocab.txt still loads, but every lost token silently becomes [UNK].
    if "vocab_size" in cfg and len(vocab) != cfg["vocab_size"]:
        raise CorruptArtifactError(vocab_path, f"has {len(vocab)} tokens but {config_path} "
                                   f"says {cfg['vocab_size']}", fix)
    try:
        return TOKENIZERS.get(kind)(vocab, lowercase, strip_accents)
    except UserError as e:
        raise CorruptArtifactError(vocab_path, str(e), fix) from e


__all__ = ["TOKENIZERS", "Tokenizer", "TokenizerConfig", "WordPieceTokenizer", "CharTokenizer",
           "ExactCharTokenizer", "SentencePieceTokenizer", "EOD",
           "build_tokenizer", "load_tokenizer", "read_vocab", "SPECIAL_TOKENS", "PAD", "UNK",
           "CONFIG_FILE"]
