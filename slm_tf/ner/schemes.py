"""Entity tagging schemes (BIO, BIOES, BMES): parsing, detection, validation and conversion.

The canonical form is a list of spans ``(start, end, type)`` over token positions (end
exclusive); every scheme converts to and from it, so converting between schemes is
``spans_to_tags(tags_to_spans(tags, a), n, b)``.
"""
import dataclasses
from typing import Iterable, List, Optional, Sequence, Tuple

OUTSIDE = "O"
# The prefixes of each scheme: (begin, inside, end, single). BIO has no end/single tags.
SCHEMES = {
    "BIO": {"B": "begin", "I": "inside"},
    "BIOES": {"B": "begin", "I": "inside", "E": "end", "S": "single"},
    "BMES": {"B": "begin", "M": "inside", "E": "end", "S": "single"},
}


@dataclasses.dataclass(frozen=True, order=True)
class Span:
    """An entity: positions ``[start, end)`` (tokens or characters) and its type."""
    start: int
    end: int
    type: str


def parse_tag(tag: str) -> Optional[Tuple[str, str]]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``; None when malformed."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    for sep in ("-", "_"):
        prefix, found, etype = tag.partition(sep)
        if found and len(prefix) == 1 and prefix in "BIMES" and etype:
            return prefix, etype
    return None


def detect_scheme(tags: Iterable[str]) -> str:
    """The scheme a set of tags belongs to (prefixes B/I -> BIO, +E/S -> BIOES, B/M/E/S -> BMES).

    Tags with only ``B``/``E``/``S`` prefixes fit both BIOES and BMES identically; BIOES is
    returned. Raises ``ValueError`` for a malformed tag or a mix of ``I`` and ``M``.
    """
    prefixes = set()
    for tag in tags:
        parsed = parse_tag(tag)
        if parsed is None:
            raise ValueError(f"tag {tag!r} is not O or <B|I|M|E|S>-<type>")
        prefixes.add(parsed[0])
    prefixes.discard(OUTSIDE)
    if "I" in prefixes and "M" in prefixes:
        raise ValueError("the tags mix I- (BIO/BIOES) and M- (BMES) prefixes")
    if "M" in prefixes:
        return "BMES"
    if prefixes & {"E", "S"}:
        return "BIOES"
    return "BIO"


def _role(scheme: str, tag: str) -> Tuple[str, str]:
    parsed = parse_tag(tag)
    if parsed is None:
        raise ValueError(f"tag {tag!r} is not O or <B|I|M|E|S>-<type>")
    prefix, etype = parsed
    if prefix == OUTSIDE:
        return "outside", ""
    role = SCHEMES[scheme].get(prefix)
    if role is None:
        raise ValueError(f"tag {tag!r} has a prefix the {scheme} scheme does not use "
                         f"(it uses {', '.join(SCHEMES[scheme])} and O)")
    return role, etype


def allowed(scheme: str, prev: Optional[str], cur: Optional[str]) -> bool:
    """Whether tag ``cur`` may follow tag ``prev`` (None = sentence start / end)."""
    p_role, p_type = _role(scheme, prev) if prev is not None else ("outside", "")
    c_role, c_type = _role(scheme, cur) if cur is not None else ("outside", "")
    # An entity left open must continue with its own type.
    open_before = p_role in ("begin", "inside")
    continues = c_role in ("inside", "end")
    if scheme == "BIO":
        # BIO entities close implicitly; only an inside tag needs an open entity of its type.
        if c_role == "inside":
            return open_before and p_type == c_type
        return True
    if open_before:
        return continues and p_type == c_type
    return not continues


def first_violation(tags: Sequence[str], scheme: str) -> Optional[Tuple[int, str]]:
    """``(token index, problem)`` of the first invalid tag transition, or None."""
    prev = None
    for i, tag in enumerate(list(tags) + [None]):
        if not allowed(scheme, prev, tag):
            if tag is None:
                return len(tags) - 1, f"the entity ending with {prev!r} is never closed"
            if prev is None:
                return i, f"{tag!r} cannot start a sentence"
            return i, f"{tag!r} cannot follow {prev!r} in the {scheme} scheme"
        prev = tag
    return None


def tags_to_spans(tags: Sequence[str], scheme: str) -> List[Span]:
    """Entity spans over token positions.

    Valid sequences decode exactly. Invalid ones are decoded leniently, the way conlleval
    does: an inside/end tag that does not continue an open entity of its type starts a new
    one, and an entity left open ends at its last tagged token.
    """
    spans, start, etype = [], None, ""

    def close(end):
        nonlocal start
        if start is not None:
            spans.append(Span(start, end, etype))
        start = None

    for i, tag in enumerate(tags):
        role, t = _role(scheme, tag)
        if role == "outside":
            close(i)
            continue
        if role in ("begin", "single") or start is None or t != etype:
            close(i)
            start, etype = i, t
        if role in ("end", "single"):
            close(i + 1)
    close(len(tags))
    return spans


def spans_to_tags(spans: Iterable[Span], length: int, scheme: str) -> List[str]:
    """Tags of ``length`` tokens for non-overlapping ``spans`` in ``scheme``."""
    names = {role: prefix for prefix, role in SCHEMES[scheme].items()}
    tags = [OUTSIDE] * length
    for s in sorted(spans):
        if not 0 <= s.start < s.end <= length:
            raise ValueError(f"span {s} is outside 0..{length}")
        if any(t != OUTSIDE for t in tags[s.start:s.end]):
            raise ValueError(f"span {s} overlaps another span")
        if s.end - s.start == 1 and "single" in names:
            tags[s.start] = f"{names['single']}-{s.type}"
            continue
        tags[s.start] = f"{names['begin']}-{s.type}"
        for i in range(s.start + 1, s.end):
            tags[i] = f"{names['inside']}-{s.type}"
        if "end" in names:
            tags[s.end - 1] = f"{names['end']}-{s.type}"
    return tags


def convert(tags: Sequence[str], source: str, target: str) -> List[str]:
    """Re-tags a sequence from scheme ``source`` into scheme ``target``."""
    return spans_to_tags(tags_to_spans(tags, source), len(tags), target)


def tag_set(types: Iterable[str], scheme: str) -> List[str]:
    """All tags of ``scheme`` over the entity ``types``: ``O`` first, then by type."""
    prefixes = list(SCHEMES[scheme])
    return [OUTSIDE] + [f"{p}-{t}" for t in sorted(set(types)) for p in prefixes]
