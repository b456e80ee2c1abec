"""Character offsets <-> model token positions, for word-piece (English) and character
(Chinese) tokenizers.

A text is cut into *units*, the positions that carry a tag: words (the pre-tokenizer's words,
so punctuation and CJK ideographs are words of their own) for WordPiece, characters for the
character tokenizer. Each unit becomes one or more model tokens; only a unit's first token is
labelled and read back ("first-subword labelling"). Every unit and token keeps its character
span in the *original* text, so entities predicted over units map back to the exact original
substring whatever the whitespace or normalization.
"""
import dataclasses
from typing import List, Optional, Sequence, Tuple

import numpy as np

from slm_tf.ner.schemes import Span, spans_to_tags, tags_to_spans
from slm_tf.tokenizers.base import Tokenizer
from slm_tf.tokenizers.normalize import _is_isolated, _is_space, normalize_py, pretokenize_py

IGNORE = -1  # target id of positions without a tag ([CLS], [SEP], later sub-tokens, padding)


@dataclasses.dataclass
class Alignment:
    """Model tokens and tagged units of one text, with their character spans."""
    tokens: List[str]
    token_offsets: List[Tuple[int, int]]
    unit_offsets: List[Tuple[int, int]]
    first_token: List[int]  # index into ``tokens`` of each unit's first token


def unit_spans(text: str, kind: str) -> List[Tuple[int, int]]:
    """Character spans of the tagged units: every non-space character (``char``), or the
    pre-tokenizer's words (``wordpiece``)."""
    if kind == "char":
        return [(i, i + 1) for i, c in enumerate(text) if not _is_space(c)]
    spans, start = [], None
    for i, c in enumerate(text):
        if _is_space(c) or _is_isolated(c):
            if start is not None:
                spans.append((start, i))
                start = None
            if not _is_space(c):
                spans.append((i, i + 1))
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(text)))
    return spans


def _unit_tokens(tokenizer: Tokenizer, piece: str) -> List[str]:
    if tokenizer.kind == "char":
        return [c for c in normalize_py(piece, tokenizer.lowercase, tokenizer.strip_accents)
                if c != " "]
    words = pretokenize_py(piece, tokenizer.lowercase, tokenizer.strip_accents)
    return [p for w in words for p in tokenizer._pieces(w)]


def align(tokenizer: Tokenizer, text: str) -> Alignment:
    """The units and model tokens of ``text`` with their character spans."""
    tokens, token_offsets, units, first = [], [], [], []
    for start, end in unit_spans(text, tokenizer.kind):
        pieces = _unit_tokens(tokenizer, text[start:end])
        if not pieces:  # e.g. a lone combining mark dropped by accent stripping
            continue
        units.append((start, end))
        first.append(len(tokens))
        # Sub-token spans are exact when normalization kept the length, else the whole unit.
        lengths = [len(p[2:]) if p.startswith("##") else len(p) for p in pieces]
        pos = start
        for p, n in zip(pieces, lengths):
            exact = sum(lengths) == end - start and p != "[UNK]"
            token_offsets.append((pos, pos + n) if exact else (start, end))
            pos += n
            tokens.append(p)
    return Alignment(tokens, token_offsets, units, first)


def encode_ids(tokenizer: Tokenizer, alignment: Alignment, max_seq_len: int) -> np.ndarray:
    """``[max_seq_len]`` int32 ids ``[CLS] tokens... [SEP] [PAD]...`` (as ``Tokenizer.encode``)."""
    ids = [tokenizer.token_to_id.get(t, tokenizer.unk_id) for t in alignment.tokens]
    ids = [tokenizer.cls_id] + ids[:max_seq_len - 2] + [tokenizer.sep_id]
    out = np.zeros(max_seq_len, np.int32)
    out[:len(ids)] = ids
    return out


def unit_positions(alignment: Alignment, max_seq_len: int) -> List[int]:
    """Id-row position of each unit's first token (after ``[CLS]``) for the units that fit."""
    return [1 + f for f in alignment.first_token if 1 + f < max_seq_len - 1]


def char_spans_to_units(alignment: Alignment, spans: Sequence[Span]) -> List[Span]:
    """Character spans -> unit spans: a unit belongs to every entity it overlaps."""
    out = []
    for s in spans:
        inside = [u for u, (a, b) in enumerate(alignment.unit_offsets) if a < s.end and b > s.start]
        if inside:
            out.append(Span(inside[0], inside[-1] + 1, s.type))
    return out


def units_to_char_spans(alignment: Alignment, spans: Sequence[Span]) -> List[Span]:
    """Unit spans -> character spans of the original text."""
    return [Span(alignment.unit_offsets[s.start][0], alignment.unit_offsets[s.end - 1][1],
                 s.type) for s in spans]


def encode_targets(alignment: Alignment, spans: Sequence[Span], scheme: str, tag_index: dict,
                   max_seq_len: int) -> np.ndarray:
    """``[max_seq_len]`` int32 tag ids at each unit's first token, ``IGNORE`` elsewhere."""
    tags = spans_to_tags(char_spans_to_units(alignment, spans), len(alignment.unit_offsets),
                         scheme)
    out = np.full(max_seq_len, IGNORE, np.int32)
    for pos, tag in zip(unit_positions(alignment, max_seq_len), tags):
        out[pos] = tag_index[tag]
    return out


def decode_tags(alignment: Alignment, row_tag_ids: Sequence[int], tag_names: Sequence[str],
                scheme: str, max_seq_len: Optional[int] = None) -> List[Span]:
    """Character spans from one row of predicted tag ids (read at each unit's first token;
    units cut off by the sequence length are untagged)."""
    max_seq_len = max_seq_len or len(row_tag_ids)
    tags = [tag_names[int(row_tag_ids[p])] for p in unit_positions(alignment, max_seq_len)]
    return units_to_char_spans(alignment, tags_to_spans(tags, scheme))
