"""Atomic writes: every artifact appears whole or not at all (temp file/dir + rename)."""
import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Iterator

from slm_tf.errors import CorruptArtifactError, UserError


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


def require_output_dir(path: str, flag: str = "--output_dir") -> None:
    """A UserError unless ``path`` is, or can be created as, a writable folder (checked before
    any work starts, so a bad path never costs a training run)."""
    if not path:
        raise UserError(f"{flag} is empty. Fix: pass {flag}=<folder for the results>.")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = "is an existing file" if existing == os.path.abspath(path) else \
            f"is inside {existing}, which is a file"
        raise UserError(f"{path}: {flag} {what}, not a folder. Fix: pass {flag}=<a new or "
                        "existing folder>.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{path}: {flag} is not writable ({existing} denies writing). Fix: "
                        f"pass {flag}=<a folder you can write to>.")


def write_text(path: str, text: str) -> None:
    """Writes UTF-8 text atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_json(path: str, obj: Any) -> None:
    """Writes JSON atomically (UTF-8, indented, non-ASCII kept readable)."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


RERUN_FIX = "rerun the command that wrote it"


def read_json(path: str, fix: str = RERUN_FIX) -> Any:
    """Reads a JSON file; an unreadable one raises a one-line error naming it and ``fix``."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file. Fix: {fix}.") from None
    except json.JSONDecodeError as e:
        raise CorruptArtifactError(path, f"not valid JSON ({e.msg} at line {e.lineno} column "
                                   f"{e.colno})", fix) from e
    except UnicodeDecodeError as e:
        raise CorruptArtifactError(path, f"not UTF-8 text (byte {e.start})", fix) from e
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a JSON file. Fix: {fix}.") from None


def file_digest(path: str) -> str:
    """SHA-1 of a file's bytes (identifies a model file independently of its path and mtime)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
