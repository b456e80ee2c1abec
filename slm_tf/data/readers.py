"""Readers for local labelled text (CSV, TSV, JSONL, a folder of ``<label>/*.txt``) and raw corpora.

Every row is validated. A bad row raises :class:`DataError` naming the file, the line and the
fix, or, with ``on_bad_row="skip"``, is counted by reason and logged. Nothing is dropped
silently: the counts travel with the data into ``metrics.json``.
"""
import collections
import csv
import dataclasses
import glob
import json
import os
import unicodedata
from typing import Dict, Iterator, List, Optional, Tuple

from absl import logging

from slm_tf.errors import UserError

FORMATS = ("auto", "csv", "tsv", "jsonl", "folder")
BAD_ROW_POLICIES = ("error", "skip")
_SKIP_HINT = "or pass --on_bad_row=skip to skip such rows (they are counted and logged)"
# A long document is legitimate: the csv module's own 131,072-character cap is far too low.
# Cells beyond MAX_FIELD_CHARS (about a 10 MB book) are reported and skipped row by row; the
# module's cap sits above it (and fits a C long everywhere) so the parser itself never fails.
MAX_FIELD_CHARS = 10_000_000
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
# Folders that tools create next to real data; never label folders.
IGNORED_FOLDERS = ("__MACOSX", "__pycache__")


class DataError(UserError):
    """Bad input data; the message names the file, the line and how to fix it."""


@dataclasses.dataclass
class Example:
    """One labelled text with where it came from (``file:line``)."""
    text: str
    label: str
    source: str


@dataclasses.dataclass
class ReadReport:
    """Examples read from one source plus the skipped rows, counted by reason."""
    examples: List[Example]
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def merge_skips(self, other: "ReadReport") -> None:
        self.skipped.update(other.skipped)


def detect_format(path: str) -> str:
    """Infers the format from the path: a directory is ``folder``, else the file extension."""
    if os.path.isdir(path):
        return "folder"
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        return "csv"
    if ext in (".tsv", ".tab"):
        return "tsv"
    if ext in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise DataError(f"{path}: cannot tell the format from the extension {ext!r}. Fix: use .csv, "
                    ".tsv or .jsonl, a folder of <label>/*.txt, or pass --data_format.")


class _RowPolicy:
    """Raises or counts a bad row according to ``on_bad_row``."""

    def __init__(self, on_bad_row: str):
        if on_bad_row not in BAD_ROW_POLICIES:
            raise ValueError(f"on_bad_row must be one of {BAD_ROW_POLICIES}, got {on_bad_row!r}")
        self.on_bad_row = on_bad_row
        self.skipped = collections.Counter()

    def bad(self, where: str, reason: str, problem: str, fix: str) -> None:
        if self.on_bad_row == "error":
            raise DataError(f"{where}: {problem}. Fix: {fix}, {_SKIP_HINT}.")
        self.skipped[reason] += 1
        logging.warning("skipping %s: %s", where, problem)


def _decoded_lines(path: str, policy: _RowPolicy) -> Iterator[Tuple[int, str]]:
    """Yields (1-based line number, text) of a UTF-8 file; undecodable lines go to ``policy``."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                policy.bad(f"{path}:{i}", "undecodable_bytes",
                           f"bytes {raw[e.start:e.end]!r} at column {e.start + 1} are not UTF-8",
                           "re-save the file as UTF-8 (e.g. iconv -f <encoding> -t utf-8)")
                continue
            if i == 1 and line.startswith("\ufeff"):
                line = line[1:]  # Excel's UTF-8 byte-order mark
            yield i, line


def label_problem(label: str) -> Optional[str]:
    """Why ``label`` cannot be a class name (labels.txt holds one per line), or None."""
    bad = sorted({c for c in label if unicodedata.category(c) in ("Cc", "Zl", "Zp")})
    if bad:
        return (f"the label {label!r} contains the control or line-break character(s) "
                f"{', '.join(f'U+{ord(c):04X}' for c in bad)}")
    return None


def _check_row(where: str, text, label, policy: _RowPolicy, text_column: str,
               label_column: str) -> Optional[Example]:
    text = "" if text is None else str(text)
    label = "" if label is None else str(label).strip()
    problem = label_problem(label)
    if problem:
        policy.bad(where, "bad_label", problem, "remove the line breaks and control "
                   "characters from the label (a model's labels are written one per line)")
        return None
    if not text.strip():
        policy.bad(where, "empty_text", f"the {text_column!r} value is empty",
                   "remove the row or fill in its text")
        return None
    if not label and label_column:
        policy.bad(where, "empty_label", f"the {label_column!r} value is empty",
                   "remove the row or give it a label")
        return None
    return Example(text=text, label=label, source=where)


def read_delimited(path: str, text_column: str, label_column: str, delimiter: str,
                   on_bad_row: str = "error", max_field_chars: int = MAX_FIELD_CHARS
                   ) -> ReadReport:
    """Reads a CSV/TSV with a header row holding ``text_column`` and ``label_column`` (empty:
    unlabelled text); a cell longer than ``max_field_chars`` characters is a bad row."""
    policy = _RowPolicy(on_bad_row)
    numbered = list(_decoded_lines(path, policy))
    if not numbered:
        raise DataError(f"{path}: the file is empty. Fix: give a file with a header row and data.")
    line_of = [n for n, _ in numbered]
    reader = csv.reader([line for _, line in numbered], delimiter=delimiter)
    examples = []
    header = None
    consumed = 0
    for row in reader:
        # csv's line_num counts physical lines consumed; a record (quoted line breaks span
        # several) is named by its first line, mapped back to the file's own numbering.
        where = f"{path}:{line_of[min(consumed, len(line_of) - 1)]}"
        consumed = reader.line_num
        if header is None:
            header = [h.strip() for h in row]
            for col, flag in ((text_column, "text_column"), (label_column, "label_column")):
                if col and col not in header:
                    raise DataError(
                        f"{where}: the header has no column {col!r} (columns: {header}). Fix: pass "
                        f"--{flag}=<one of those columns>, or add a header row to the file.")
            ti = header.index(text_column)
            li = header.index(label_column) if label_column else None
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line between records
        if len(row) != len(header):
            policy.bad(where, "ragged_row", f"the row has {len(row)} fields but the header has "
                       f"{len(header)}", "quote fields that contain the delimiter, or fix the row")
            continue
        longest = max(len(cell) for cell in row)
        if longest > max_field_chars:
            policy.bad(where, "field_too_large", f"a cell has {longest:,} characters, more "
                       f"than the {max_field_chars:,} allowed", "split the document or "
                       "check for a missing closing quote that swallows the rows after it")
            continue
        ex = _check_row(where, row[ti], row[li] if li is not None else "", policy, text_column,
                        label_column)
        if ex is not None:
            examples.append(ex)
    if header is None:
        raise DataError(f"{path}: no header row. Fix: add a header row naming the columns.")
    return ReadReport(examples, policy.skipped)


def json_lines(path: str, policy: _RowPolicy) -> Iterator[Tuple[str, object]]:
    """``(file:line, parsed value)`` of every non-blank line of a JSON-lines file; a line that
    is not valid JSON goes to ``policy``."""
    for i, line in _decoded_lines(path, policy):
        where = f"{path}:{i}"
        if not line.strip():
            continue
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as e:
            policy.bad(where, "bad_json", f"not valid JSON ({e.msg} at column {e.colno})",
                       "write exactly one JSON object per line")


def read_jsonl(path: str, text_column: str, label_column: str,
               on_bad_row: str = "error") -> ReadReport:
    """Reads one JSON object per line with ``text_column`` and ``label_column`` keys (an empty
    ``label_column`` reads unlabelled text)."""
    policy = _RowPolicy(on_bad_row)
    examples = []
    for where, obj in json_lines(path, policy):
        if not isinstance(obj, dict):
            policy.bad(where, "bad_json", "the line is not a JSON object",
                       "write one object per line, e.g. {\"text\": ..., \"label\": ...}")
            continue
        missing = [c for c in (text_column, label_column) if c and c not in obj]
        if missing:
            flag = "text_column" if missing[0] == text_column else "label_column"
            policy.bad(where, "missing_field", f"the object has no key {missing[0]!r} "
                       f"(keys: {sorted(obj)})", f"add the key or pass --{flag}=<key>")
            continue
        ex = _check_row(where, obj[text_column], obj.get(label_column, ""), policy, text_column,
                        label_column)
        if ex is not None:
            examples.append(ex)
    return ReadReport(examples, policy.skipped)


def read_folder(path: str, on_bad_row: str = "error") -> ReadReport:
    """Reads ``path/<label>/*.txt``: each file is one example labelled by its folder name."""
    policy = _RowPolicy(on_bad_row)
    examples = []
    folders = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    ignored = [d for d in folders if _is_hidden_or_tool(d)]
    if ignored:
        logging.info("%s: ignored the hidden and tool folders %s (not labels)", path, ignored)
    labels = [d for d in folders if d not in ignored]
    if not labels:
        raise DataError(f"{path}: no label sub-folders. Fix: lay the data out as "
                        f"{path}/<label>/<example>.txt.")
    for label in labels:
        files = sorted(os.path.join(path, label, f) for f in os.listdir(os.path.join(path, label))
                       if f.endswith(".txt"))
        hidden = [f for f in files if os.path.basename(f).startswith(".")]
        if hidden:
            logging.info("%s: ignored %d hidden files (e.g. %s)", os.path.join(path, label),
                         len(hidden), os.path.basename(hidden[0]))
        problem = label_problem(label)
        if problem:
            for file in files:
                policy.bad(f"{file}:1", "bad_label", f"its folder name is not a usable label: "
                           f"{problem}", "rename the folder without control characters")
            continue
        for file in (f for f in files if f not in hidden and os.path.isfile(f)):
            lines = [line for _, line in _decoded_lines(file, policy)]
            text = "".join(lines).strip()
            if not text:
                policy.bad(f"{file}:1", "empty_text", "the file is empty or undecodable",
                           "remove the file or fill in its text")
                continue
            examples.append(Example(text=text, label=label, source=f"{file}:1"))
    return ReadReport(examples, policy.skipped)


def _is_hidden_or_tool(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_FOLDERS


def read_labelled(path: str, text_column: str = "text", label_column: str = "label",
                  data_format: str = "auto", on_bad_row: str = "error") -> ReadReport:
    """Reads a labelled text file or folder in any supported format."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder. Fix: check --data (a path, or a "
                        "registered name such as banking77).")
    fmt = detect_format(path) if data_format == "auto" else data_format
    if fmt == "csv":
        report = read_delimited(path, text_column, label_column, ",", on_bad_row)
    elif fmt == "tsv":
        report = read_delimited(path, text_column, label_column, "\t", on_bad_row)
    elif fmt == "jsonl":
        report = read_jsonl(path, text_column, label_column, on_bad_row)
    elif fmt == "folder":
        report = read_folder(path, on_bad_row)
    else:
        raise DataError(f"{path}: unknown --data_format {fmt!r}; choose one of {FORMATS}.")
    if not report.examples:
        raise DataError(f"{path}: no usable rows ({dict(report.skipped)} skipped). Fix: check "
                        "the columns and the encoding.")
    if report.skipped:
        logging.warning("%s: skipped %d bad rows: %s", path, sum(report.skipped.values()),
                        dict(report.skipped))
    return report


def read_corpus(path: str, unit: str = "line", on_bad_row: str = "error") -> ReadReport:
    """Reads raw text (.txt files, or a folder of them): one document per line, paragraph or
    whole file (``unit="file"`` keeps the text verbatim, as a language model needs it).

    Documents carry the empty label; they feed language-model and unlabeled-transfer work.
    """
    if unit not in ("line", "paragraph", "file"):
        raise ValueError(f"unit must be 'line', 'paragraph' or 'file', got {unit!r}")
    policy = _RowPolicy(on_bad_row)
    files = sorted(glob.glob(os.path.join(path, "**", "*.txt"), recursive=True)) \
        if os.path.isdir(path) else [path]
    if not files or not os.path.exists(files[0]):
        raise DataError(f"{path}: no .txt files found. Fix: point --data at a .txt file or a "
                        "folder of them.")
    docs = []
    for file in files:
        buf, start = [], None
        if unit == "file":
            text = "".join(line for _, line in _decoded_lines(file, policy))
            if text.strip():
                docs.append(Example(text, "", f"{file}:1"))
            else:
                policy.bad(f"{file}:1", "empty_text", "the file is empty or undecodable",
                           "remove the file or fill in its text")
            continue
        for i, line in _decoded_lines(file, policy):
            if unit == "line":
                if line.strip():
                    docs.append(Example(line.strip(), "", f"{file}:{i}"))
                continue
            if line.strip():
                start = start or i
                buf.append(line.strip())
            elif buf:
                docs.append(Example(" ".join(buf), "", f"{file}:{start}"))
                buf, start = [], None
        if buf:
            docs.append(Example(" ".join(buf), "", f"{file}:{start}"))
    return ReadReport(docs, policy.skipped)


def class_counts(examples: List[Example]) -> Dict[str, int]:
    """Examples per label."""
    return dict(collections.Counter(e.label for e in examples))
