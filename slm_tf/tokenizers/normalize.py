"""Text normalization and pre-tokenization, written twice: in-graph (TF) and pure Python.

The two must produce the same words; the pure-Python version is the specification an app
reimplements (see BUILD.md), and tests check both agree on English and Chinese text.

Rules, in order:
1. lower-case (optional), 2. Unicode NFD and drop combining marks (optional, "strip accents";
otherwise NFC), 3. control, format and separator characters become a space,
4. (word tokenizers) every punctuation/symbol character and every CJK ideograph becomes its
own word, 5. split on spaces.
"""
import unicodedata
from typing import List

import tensorflow as tf
import tensorflow_text as tf_text

# CJK ideograph blocks (the ranges BERT treats as one-character words).
CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF),
              (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0x2F800, 0x2FA1F))
_CJK_CLASS = "".join(f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in CJK_RANGES)
_SPACE_RE = r"[\p{Cc}\p{Cf}\p{Z}]"
_ISOLATE_RE = f"([\\p{{P}}\\p{{S}}{_CJK_CLASS}])"


def is_cjk(ch: str) -> bool:
    """True for a CJK ideograph."""
    cp = ord(ch)
    # Below the first block (every Latin, Greek, Cyrillic ... character) no range is scanned:
    # the servers call this for every character of every request.
    return cp >= CJK_RANGES[0][0] and any(a <= cp <= b for a, b in CJK_RANGES)


def _is_space(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat in ("Cc", "Cf") or cat.startswith("Z")


def _is_isolated(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat.startswith("P") or cat.startswith("S") or is_cjk(ch)


def normalize_py(text: str, lowercase: bool, strip_accents: bool) -> str:
    """Rules 1-3 on one string (pure Python)."""
    if lowercase:
        text = text.lower()
    if strip_accents:
        text = "".join(c for c in unicodedata.normalize("NFD", text)
                       if unicodedata.category(c) != "Mn")
    else:
        text = unicodedata.normalize("NFC", text)
    return "".join(" " if _is_space(c) else c for c in text)


def pretokenize_py(text: str, lowercase: bool, strip_accents: bool) -> List[str]:
    """Rules 1-5: the words of one string (pure Python)."""
    text = normalize_py(text, lowercase, strip_accents)
    text = "".join(f" {c} " if _is_isolated(c) else c for c in text)
    return [w for w in text.split(" ") if w]


def normalize_tf(texts: tf.Tensor, lowercase: bool, strip_accents: bool) -> tf.Tensor:
    """Rules 1-3 on a string tensor (in-graph)."""
    if lowercase:
        texts = tf.strings.lower(texts, encoding="utf-8")
    if strip_accents:
        texts = tf.strings.regex_replace(tf_text.normalize_utf8(texts, "NFD"), r"\p{Mn}", "")
    else:
        texts = tf_text.normalize_utf8(texts, "NFC")
    return tf.strings.regex_replace(texts, _SPACE_RE, " ")


def pretokenize_tf(texts: tf.Tensor, lowercase: bool, strip_accents: bool) -> tf.RaggedTensor:
    """Rules 1-5 on a 1-D string tensor: a ragged ``[batch, words]`` string tensor."""
    texts = normalize_tf(texts, lowercase, strip_accents)
    texts = tf.strings.regex_replace(texts, _ISOLATE_RE, r" \1 ")
    words = tf.strings.split(texts, sep=" ")
    return tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)
