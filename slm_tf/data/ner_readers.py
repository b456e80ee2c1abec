"""Readers for entity-annotated text: CoNLL-style token/tag files and JSONL with character spans.

Both give :class:`NerExample`: the sentence text, its entities as character spans (the
canonical form every scheme converts to and from) and, for CoNLL input, the character span of
each given token. Bad input follows the conventions of :mod:`slm_tf.data.readers`: a
:class:`DataError` naming the file, the line and the fix, or with ``on_bad_row="skip"`` a
counted skip (or, for an invalid tag sequence, a counted lenient repair).
"""
import collections
import dataclasses
import os
from typing import Iterable, List, Optional, Sequence, Tuple

from absl import logging

from slm_tf.data.readers import DataError, _decoded_lines, _RowPolicy, json_lines
from slm_tf.ner.schemes import (SCHEMES, Span, detect_scheme, first_violation, parse_tag,
                                tags_to_spans)
from slm_tf.tokenizers.normalize import is_cjk

NER_FORMATS = ("auto", "conll", "jsonl")
JOINERS = ("auto", "space", "none")


@dataclasses.dataclass
class NerExample:
    """A sentence, its entities as character spans and where it came from (``file:line``)."""
    text: str
    spans: List[Span]
    source: str
    # Character span of each token of a CoNLL file (None for JSONL: the tokenizer decides).
    tokens: Optional[List[Tuple[int, int]]] = None

    def entities(self) -> List[Tuple[int, int, str, str]]:
        """``(start, end, type, surface text)`` of every entity."""
        return [(s.start, s.end, s.type, self.text[s.start:s.end]) for s in self.spans]


@dataclasses.dataclass
class NerReadReport:
    """Sentences read from one file, the scheme found and the skipped/repaired rows by reason."""
    examples: List[NerExample]
    scheme: str
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def types(self) -> List[str]:
        """Entity types present, sorted."""
        return sorted({s.type for e in self.examples for s in e.spans})


def _join(tokens: Sequence[str], joiner: str) -> Tuple[str, List[Tuple[int, int]]]:
    sep = "" if joiner == "none" else " "
    text, offsets = "", []
    for i, tok in enumerate(tokens):
        if i:
            text += sep
        offsets.append((len(text), len(text) + len(tok)))
        text += tok
    return text, offsets


def _pick_joiner(sentences, joiner: str) -> str:
    """"auto": no separator when the file is character-per-line text (nearly every token one
    character, mostly CJK ideographs), else a space."""
    if joiner != "auto":
        return joiner
    tokens = [tok for sent in sentences for tok, _, _ in sent]
    single = sum(1 for t in tokens if len(t) == 1)
    cjk = sum(1 for t in tokens if len(t) == 1 and is_cjk(t))
    char_level = tokens and single >= 0.9 * len(tokens) and cjk >= 0.5 * len(tokens)
    return "none" if char_level else "space"


def _conll_sentences(path: str, policy: _RowPolicy):
    """Sentences as lists of ``(token, tag, line)``; a blank line separates sentences."""
    sentence, bad = [], False
    for i, line in _decoded_lines(path, policy):
        line = line.rstrip("\r\n")
        if not line.strip():
            if sentence and not bad:
                yield sentence
            sentence, bad = [], False
            continue
        if line.startswith("-DOCSTART-"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields]
        where = f"{path}:{i}"
        if len(fields) < 2 or not fields[-1]:
            policy.bad(where, "missing_tag", f"the line {line!r} has no tag",
                       "write the token and its tag separated by a tab or a space")
            bad = True
            continue
        if not fields[0]:
            policy.bad(where, "empty_token", "the token before the tag is empty",
                       "remove the line or write the token")
            bad = True
            continue
        sentence.append((fields[0], fields[-1], i))
    if sentence and not bad:
        yield sentence


def read_conll(path: str, scheme: str = "auto", joiner: str = "auto",
               known_types: Optional[Iterable[str]] = None,
               on_bad_row: str = "error") -> NerReadReport:
    """Reads one token and its tag per line (tab or space separated), sentences split by blank
    lines; ``scheme`` is BIO, BIOES, BMES or auto (detected from the tags).

    ``joiner`` rebuilds each sentence's text: ``space`` between tokens, ``none`` (Chinese
    characters) or auto. ``known_types`` (e.g. a trained model's) makes other types an error.
    """
    policy = _RowPolicy(on_bad_row)
    known = set(known_types) if known_types is not None else None
    sentences = []
    for sent in _conll_sentences(path, policy):
        bad = next(((tag, line) for _, tag, line in sent if parse_tag(tag) is None), None)
        if bad is None and known is not None:
            bad = next(((tag, line) for _, tag, line in sent
                        if parse_tag(tag)[1] not in known | {""}), None)
        if bad is not None:
            policy.bad(f"{path}:{bad[1]}", "unknown_tag", f"tag {bad[0]!r} is not O or "
                       f"<prefix>-<type> with a prefix of BIO/BIOES/BMES"
                       + (f" and a type in {sorted(known)}" if known is not None else ""),
                       "correct the tag")
            continue
        sentences.append(sent)
    if scheme == "auto":
        try:
            scheme = detect_scheme(tag for sent in sentences for _, tag, _ in sent)
        except ValueError as e:
            raise DataError(f"{path}: {e}. Fix: use one scheme per file (BIO, BIOES or BMES), "
                            "or pass the scheme explicitly.") from None
    elif scheme not in SCHEMES:
        raise DataError(f"{path}: unknown tagging scheme {scheme!r}. Fix: choose one of "
                        f"{', '.join(SCHEMES)} or auto.")
    joiner = _pick_joiner(sentences, joiner)
    examples = []
    for sent in sentences:
        tokens = [tok for tok, _, _ in sent]
        tags = [tag for _, tag, _ in sent]
        where = f"{path}:{sent[0][2]}"
        try:
            violation = first_violation(tags, scheme)
        except ValueError as e:  # a prefix the (given) scheme does not use
            policy.bad(where, "unknown_tag", str(e), f"use {scheme} tags only")
            continue
        if violation is not None:
            index, problem = violation
            problem_where = f"{path}:{sent[index][2]}"
            if policy.on_bad_row == "error":
                policy.bad(problem_where, "invalid_tag_sequence", problem,
                           f"correct the tags of the sentence starting at line {sent[0][2]} "
                           f"(the {scheme} scheme)")
            policy.skipped["repaired_tag_sequence"] += 1
            logging.warning("repairing %s: %s (decoded leniently)", problem_where, problem)
        text, offsets = _join(tokens, joiner)
        spans = [Span(offsets[s.start][0], offsets[s.end - 1][1], s.type)
                 for s in tags_to_spans(tags, scheme)]
        examples.append(NerExample(text, spans, where, offsets))
    return _finish(path, NerReadReport(examples, scheme, policy.skipped))


def _span_of(entity, where: str, policy: _RowPolicy) -> Optional[Span]:
    if isinstance(entity, dict):
        etype = entity.get("label", entity.get("type"))
        start, end = entity.get("start"), entity.get("end")
    elif isinstance(entity, (list, tuple)) and len(entity) == 3:
        start, end, etype = entity
    else:
        start = end = etype = None
    if not (isinstance(start, int) and isinstance(end, int) and isinstance(etype, str)
            and etype):
        policy.bad(where, "bad_span", f"the entity {entity!r} is not "
                   "{\"start\": int, \"end\": int, \"label\": str} or [start, end, label]",
                   "write each entity in one of those forms (end exclusive)")
        return None
    return Span(start, end, etype)


def read_span_jsonl(path: str, text_column: str = "text", spans_column: str = "entities",
                    known_types: Optional[Iterable[str]] = None,
                    on_bad_row: str = "error") -> NerReadReport:
    """Reads one JSON object per line: a text and its entities as character offsets (end
    exclusive), e.g. ``{"text": "Ann met Bob", "entities": [[0, 3, "PER"], [8, 11, "PER"]]}``."""
    policy = _RowPolicy(on_bad_row)
    known = set(known_types) if known_types is not None else None
    examples = []
    for where, obj in json_lines(path, policy):
        if not isinstance(obj, dict) or text_column not in obj or spans_column not in obj:
            policy.bad(where, "missing_field", f"the line is not an object with the keys "
                       f"{text_column!r} and {spans_column!r}",
                       "add them, or pass --text_column / --spans_column")
            continue
        text, raw = obj[text_column], obj[spans_column]
        if not isinstance(text, str) or not text.strip():
            policy.bad(where, "empty_sentence", "the text is empty",
                       "remove the line or fill in its text")
            continue
        if not isinstance(raw, list):
            policy.bad(where, "bad_span", f"{spans_column!r} is not a list",
                       "give a list of entities (it may be empty)")
            continue
        spans = [_span_of(e, where, policy) for e in raw]
        if any(s is None for s in spans):
            continue
        problem = _span_problem(sorted(spans), text, known)
        if problem is not None:
            reason, message, fix = problem
            policy.bad(where, reason, message, fix)
            continue
        examples.append(NerExample(text, sorted(spans), where))
    return _finish(path, NerReadReport(examples, "spans", policy.skipped))


def _span_problem(spans: List[Span], text: str, known):
    prev = None
    for s in spans:
        if not 0 <= s.start < s.end <= len(text):
            return ("span_outside_text", f"the entity [{s.start}, {s.end}) {s.type!r} lies "
                    f"outside the text of {len(text)} characters (or is empty)",
                    "give 0 <= start < end <= len(text), end exclusive")
        if known is not None and s.type not in known:
            return ("unknown_tag", f"the entity type {s.type!r} is not one of {sorted(known)}",
                    "correct the type")
        if prev is not None and s.start < prev.end:
            return ("overlapping_spans", f"the entities [{prev.start}, {prev.end}) "
                    f"{prev.type!r} and [{s.start}, {s.end}) {s.type!r} overlap",
                    "keep one of them (nested entities are not supported)")
        prev = s
    return None


def _finish(path: str, report: NerReadReport) -> NerReadReport:
    if not report.examples:
        raise DataError(f"{path}: no usable sentences ({dict(report.skipped)} skipped). Fix: "
                        "check the format (token<TAB>tag lines, or JSONL with text and entities).")
    if report.skipped:
        logging.warning("%s: %d sentences skipped or repaired: %s", path,
                        sum(report.skipped.values()), dict(report.skipped))
    return report


def detect_ner_format(path: str) -> str:
    """``jsonl`` for .jsonl/.ndjson/.json files, otherwise ``conll``."""
    ext = os.path.splitext(path)[1].lower()
    return "jsonl" if ext in (".jsonl", ".ndjson", ".json") else "conll"


def read_ner(path: str, data_format: str = "auto", scheme: str = "auto", joiner: str = "auto",
             text_column: str = "text", spans_column: str = "entities",
             known_types: Optional[Iterable[str]] = None,
             on_bad_row: str = "error") -> NerReadReport:
    """Reads an entity-annotated file in either format."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file. Fix: check --data (a CoNLL-style .txt or a "
                        ".jsonl with text and entities).")
    fmt = detect_ner_format(path) if data_format == "auto" else data_format
    if fmt == "conll":
        return read_conll(path, scheme, joiner, known_types, on_bad_row)
    if fmt == "jsonl":
        return read_span_jsonl(path, text_column, spans_column, known_types, on_bad_row)
    raise DataError(f"{path}: unknown NER data format {fmt!r}. Fix: choose one of {NER_FORMATS}.")
