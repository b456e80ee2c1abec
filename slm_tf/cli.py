"""Shared plumbing of the absl entry points in scripts/: clean errors instead of stack traces."""
import functools
import logging as pylogging
import sys

from absl import logging

from slm_tf.errors import UserError


def friendly_errors(main):
    """Wraps an absl ``main``: a user error (including a stray positional argument) prints one
    clear line and exits with status 2."""
    @functools.wraps(main)
    def wrapper(argv):
        quiet_libraries()
        try:
            if len(argv) > 1:
                raise UserError(f"unexpected arguments {argv[1:]}; every option is a --flag")
            return main(argv)
        except UserError as e:
            logging.debug("full traceback", exc_info=True)
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    return wrapper


class _OwnRecordsOnly(pylogging.Filter):
    """Keeps our own log records and any library warning-or-worse."""

    def filter(self, record):
        return record.levelno >= pylogging.ERROR or "slm_tf" in record.pathname \
            or "/scripts/" in record.pathname


def quiet_libraries() -> None:
    """TensorFlow and tfds log a lot at INFO; show our progress and real problems only."""
    logging.get_absl_handler().addFilter(_OwnRecordsOnly())
    pylogging.getLogger("tensorflow").setLevel(pylogging.ERROR)


def command_line_flag_names(argv, flag_values) -> set:
    """Names of the flags given literally on the command line (not through --flagfile):
    ``--name=value``, ``--name value``, ``--name`` and ``--noname`` for booleans."""
    names = set()
    for arg in argv[1:]:
        if not arg.startswith("--") or arg == "--":
            continue
        name = arg[2:].split("=", 1)[0]
        if name not in flag_values and name.startswith("no") and name[2:] in flag_values:
            name = name[2:]
        if name in flag_values and name != "flagfile":
            names.add(name)
    return names


def print_table(rows, headers) -> str:
    """A Markdown table (also readable in a terminal)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text)
    return text
