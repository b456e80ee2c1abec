"""The shipped recipes (``configs/*.flags``) and flagfile reading with paths relative to the file.

The repository's top-level ``configs/`` folder is the source of truth; setup.py installs it as
``slm_tf/configs`` so a non-editable install finds the same files. :func:`expand_flagfiles`
replaces every ``--flagfile=`` with the file's lines, resolving the paths a recipe names
(nested ``--flagfile=``, ``--*_recipe=``) against the directory of the flagfile that names them,
so a recipe works from any working directory. TensorFlow-free: scripts call it before loading TF.

  python -m slm_tf.recipes            # lists the installed recipes with their paths
"""
import os
import sys
from typing import List, Optional, Sequence

from slm_tf.errors import UserError

_HERE = os.path.dirname(os.path.abspath(__file__))
_INSTALLED = os.path.join(_HERE, "configs")
_SOURCE = os.path.join(os.path.dirname(_HERE), "configs")
# An installed wheel carries slm_tf/configs; a source checkout (editable install) has configs/.
RECIPES_DIR = _INSTALLED if os.path.isdir(_INSTALLED) else _SOURCE
SUFFIX = ".flags"


def recipe_names() -> List[str]:
    """Names of the shipped recipes (file names without ``.flags``)."""
    if not os.path.isdir(RECIPES_DIR):
        return []
    return sorted(f[:-len(SUFFIX)] for f in os.listdir(RECIPES_DIR) if f.endswith(SUFFIX))


def recipe_path(name: str) -> str:
    """The absolute path of a shipped recipe given as ``quickstart``, ``quickstart.flags`` or
    ``configs/quickstart.flags``."""
    base = os.path.basename(name)
    if not base.endswith(SUFFIX):
        base += SUFFIX
    path = os.path.join(RECIPES_DIR, base)
    if not os.path.isfile(path):
        raise UserError(f"no shipped recipe {name!r} in {RECIPES_DIR}; choose one of "
                        f"{recipe_names()}")
    return path


def is_path_flag(name: str, value: str) -> bool:
    """Whether ``--name=value`` names a recipe file (``--flagfile``, ``--recipe``,
    ``--*_recipe``), resolved relative to the flagfile it is in. The value must look like a
    path, so ``--auto_recipe=false`` stays a boolean."""
    if name != "flagfile" and name != "recipe" and not name.endswith("_recipe"):
        return False
    return name == "flagfile" or value.endswith(SUFFIX) or os.sep in value


def resolve_path(value: str, base_dir: str) -> str:
    """``value`` as named inside a flagfile in ``base_dir``: relative to that flagfile first;
    then as given (relative to the working directory); then, for the ``configs/<name>.flags``
    spelling of older recipes, the shipped recipe of that name."""
    if not value or os.path.isabs(value):
        return value
    value = os.path.expanduser(value)
    candidate = os.path.normpath(os.path.join(base_dir, value))
    if os.path.exists(candidate) or os.path.exists(value):
        return candidate if os.path.exists(candidate) else os.path.abspath(value)
    shipped = os.path.join(RECIPES_DIR, os.path.basename(value))
    if os.path.dirname(value) == "configs" and os.path.isfile(shipped):
        return shipped
    return candidate  # missing: the error then names the path the recipe meant


def _flagfile_lines(path: str, stack: Sequence[str]) -> List[str]:
    real = os.path.realpath(path)
    if real in stack:
        raise UserError(f"flagfile {path} includes itself (through {' -> '.join(stack)})")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UserError(f"cannot read flagfile {path}: {e.strerror}. Fix: pass an existing "
                        f"file, or one of the shipped recipes in {RECIPES_DIR}") from None
    out = []
    base = os.path.dirname(os.path.abspath(path))
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("//"):
            continue
        out.extend(_expand_arg(line, base, [*stack, real]))
    return out


def _expand_arg(arg: str, base_dir: str, stack: Sequence[str]) -> List[str]:
    if not arg.startswith("-") or "=" not in arg:
        return [arg]
    name, value = arg.lstrip("-").split("=", 1)
    if not is_path_flag(name, value):
        return [arg]
    value = resolve_path(value, base_dir)
    if name == "flagfile":
        return _flagfile_lines(value, stack)
    return [f"--{name}={value}"]


def expand_flagfiles(argv: Sequence[str], base_dir: Optional[str] = None) -> List[str]:
    """``argv`` (program name first) with each ``--flagfile=`` replaced by its lines, paths in
    them resolved relative to the flagfile; arguments given directly stay relative to
    ``base_dir`` (the working directory). Stops at ``--`` as absl does."""
    base_dir = base_dir or os.getcwd()
    out, rest = list(argv[:1]), list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            out += [arg, *rest]
            break
        if arg in ("--flagfile", "-flagfile") and rest:
            arg = f"--flagfile={rest.pop(0)}"
        if arg.startswith(("--flagfile=", "-flagfile=")):
            out += _flagfile_lines(os.path.join(base_dir, arg.split("=", 1)[1]), ())
        else:
            out.append(arg)
    return out


if __name__ == "__main__":
    for n in recipe_names():
        print(f"{n:24s} {os.path.join(RECIPES_DIR, n + SUFFIX)}")
    sys.exit(0)
