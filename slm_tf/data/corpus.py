"""Raw-text corpora for language modelling: reading documents and splitting them by document.

A document never straddles two splits, and the split is a pure function of the document names
(a hash, not file order or a random generator), so reruns and other machines agree.
"""
import dataclasses
import hashlib
import itertools
import os
from typing import Dict, List, Sequence

from absl import logging

from slm_tf.data.readers import DataError, Example, detect_format, read_corpus, read_labelled

SPLITS = ("train", "validation", "test")

# The benchmark split of issue 15 over the 40 plays in shared/data/shakespeare/plays.
SHAKESPEARE_SPLIT = {"test": ("hamlet.txt", "tempest.txt"),
                     "validation": ("macbeth.txt", "twelfth_night.txt")}


@dataclasses.dataclass
class Corpus:
    """Documents of each split; ``name`` says where they came from."""

    name: str
    splits: Dict[str, List[Example]]

    def texts(self, split: str) -> List[str]:
        """The documents' texts of one split."""
        return [e.text for e in self.splits[split]]

    def summary(self) -> Dict[str, Dict[str, int]]:
        """Documents and characters per split."""
        return {s: {"documents": len(d), "characters": sum(len(e.text) for e in d)}
                for s, d in self.splits.items()}


def read_documents(path: str, text_column: str = "text", data_format: str = "auto",
                   on_bad_row: str = "error") -> List[Example]:
    """Documents of ``path``: each .txt file whole (one file, or a folder of them), each
    sentence of a CoNLL token-per-line .txt file, or each row's ``text_column`` of a
    CSV/TSV/JSONL."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder. Fix: check --data.")
    fmt = "txt" if os.path.isdir(path) or path.endswith(".txt") else (
        detect_format(path) if data_format == "auto" else data_format)
    if fmt == "txt" and os.path.isfile(path) and looks_like_conll(path):
        docs = read_conll_sentences(path, on_bad_row)
    elif fmt == "txt":
        docs = read_corpus(path, unit="file", on_bad_row=on_bad_row).examples
    else:
        docs = read_labelled(path, text_column, "", fmt, on_bad_row).examples
    if not docs:
        raise DataError(f"{path}: no non-empty documents. Fix: give text files or rows.")
    return docs


def looks_like_conll(path: str, lines: int = 200) -> bool:
    """True when the first non-blank lines of ``path`` are all ``token tag`` pairs with an
    entity tag last (``O``, ``B-PER``, ...): a CoNLL-style file such as MSRA or WNUT."""
    from slm_tf.ner.schemes import parse_tag
    seen = 0
    with open(path, "rb") as f:
        for raw in itertools.islice(f, lines):
            fields = raw.decode("utf-8", "replace").split()
            if not fields or fields[0] == "-DOCSTART-":
                continue
            if len(fields) < 2 or parse_tag(fields[-1]) is None:
                return False
            seen += 1
    return seen > 0


def read_conll_sentences(path: str, on_bad_row: str = "error") -> List[Example]:
    """The sentences of a CoNLL-style token-per-line file as documents (tags ignored; tokens
    joined without spaces for character-per-line CJK text, else with one space)."""
    # The NER reader's line and joiner rules, without its tag validation: a malformed entity
    # does not make a sentence less usable as text.
    from slm_tf.data.ner_readers import _RowPolicy, _conll_sentences, _join, _pick_joiner
    policy = _RowPolicy(on_bad_row)
    sentences = list(_conll_sentences(path, policy))
    joiner = _pick_joiner(sentences, "auto")
    docs = [Example(_join([tok for tok, _, _ in sent], joiner)[0], "", f"{path}:{sent[0][2]}")
            for sent in sentences]
    logging.info("%s: CoNLL token-per-line file: %d sentences are the documents (tokens "
                 "joined %s)", path, len(docs), "without spaces" if joiner == "none" else
                 "with spaces")
    if policy.skipped:
        logging.warning("%s: skipped %s", path, dict(policy.skipped))
    return docs


def document_name(doc: Example) -> str:
    """A document's file name (folder corpora) or ``file:line`` (one row per document)."""
    source = doc.source
    if source.endswith(":1") and source[:-2].endswith(".txt"):
        return os.path.basename(source[:-2])
    return os.path.basename(source)


def _unit_hash(name: str) -> float:
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:12], 16) / 16 ** 12


def split_documents(docs: Sequence[Example], validation_fraction: float = 0.05,
                    test_fraction: float = 0.05, explicit: Dict[str, Sequence[str]] = None,
                    name: str = "corpus", required: Sequence[str] = SPLITS) -> Corpus:
    """Splits documents into train/validation/test.

    ``explicit`` maps "validation"/"test" to document names (see :func:`document_name`); the
    rest is training. Otherwise each document goes to test when its name's hash is below
    ``test_fraction``, to validation below ``test_fraction + validation_fraction``. A single
    document (one .txt file) is cut at character positions instead: its head trains, the tail
    is validation then test, cut at line breaks. A split in ``required`` must not end up
    empty.
    """
    docs = list(docs)
    splits = {s: [] for s in SPLITS}
    if explicit:
        names = {document_name(d): d for d in docs}
        claimed = set()
        for split in ("validation", "test"):
            for n in explicit.get(split, ()):
                if n not in names:
                    raise DataError(f"{name}: no document named {n!r} for the {split} split "
                                    f"(documents: {sorted(names)[:8]}...). Fix: check the "
                                    "split lists.")
                if n in claimed:
                    raise DataError(f"{name}: {n!r} is listed in two splits. Fix: list each "
                                    "document once.")
                claimed.add(n)
                splits[split].append(names[n])
        splits["train"] = [d for d in docs if document_name(d) not in claimed]
    elif len(docs) == 1:
        text, source = docs[0].text, docs[0].source
        n = len(text)
        cut_val = _line_cut(text, int(n * (1 - validation_fraction - test_fraction)))
        cut_test = _line_cut(text, int(n * (1 - test_fraction)))
        for split, (a, b) in zip(SPLITS, ((0, cut_val), (cut_val, cut_test), (cut_test, n))):
            if b > a:
                splits[split].append(Example(text[a:b], "", f"{source}@{a}"))
    else:
        for d in docs:
            h = _unit_hash(document_name(d))
            split = ("test" if h < test_fraction else
                     "validation" if h < test_fraction + validation_fraction else "train")
            splits[split].append(d)
    for split in required:
        if not splits[split]:
            raise DataError(f"{name}: the {split} split is empty ({len(docs)} documents). "
                            "Fix: give more documents or larger split fractions.")
    return Corpus(name, splits)


def _line_cut(text: str, at: int) -> int:
    """The position just after the first line break at or after ``at`` (or ``at``)."""
    nl = text.find("\n", at)
    return nl + 1 if nl >= 0 else at
