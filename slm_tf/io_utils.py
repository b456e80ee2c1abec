"""Atomic writes: every artifact appears whole or not at all (temp file/dir + rename)."""
import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; artifacts get the mode a plain open() or
# mkdir() would give them, so other users and containers can read a shared run directory.
_UMASK = _umask()

@contextlib.contextmanager
def atomic_path(path: str, is_dir: bool = False) -> Iterator[str]:
    """Yields a temporary path next to ``path``; on success renames it onto ``path``.

    Works for files and directories (e.g. a SavedModel). A crash leaves the previous
    version, or nothing, never a half-written artifact.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path)
    if is_dir:
        tmp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    else:
        # Keep the full extension (".weights.h5", ".keras"): writers infer the format from it.
        ext = "".join(pathlib.Path(base).suffixes)
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=parent)
        os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, (0o777 if os.path.isdir(tmp) else 0o666) & ~_UMASK)
        if is_dir and os.path.isdir(path):
            old = tempfile.mkdtemp(prefix=f".{base}.", suffix=".old", dir=parent)
            os.replace(path, os.path.join(old, "x"))
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Writes UTF-8 text atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_json(path: str, obj: Any) -> None:
    """Writes JSON atomically (UTF-8, indented, non-ASCII kept readable)."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: str) -> Any:
    """Reads a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def file_digest(path: str) -> str:
    """SHA-1 of a file's bytes (identifies a model file independently of its path and mtime)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
