"""Shared plumbing of the absl entry points in scripts/: flag parsing with recipe-relative
paths, ``--help`` grouped by config, and clean errors instead of stack traces.

Every script ends with ``run(main)``; nothing here imports TensorFlow, so ``--help`` and flag
errors answer before TensorFlow loads (scripts import the heavy modules inside ``main``)."""
import dataclasses
import functools
import logging as pylogging
import os
import sys
import textwrap

from absl import app, flags, logging

from slm_tf.config import flag_groups, from_flags
from slm_tf.data.config import DataConfig, check_paths
from slm_tf.errors import UserError
from slm_tf.io_utils import require_output_dir
from slm_tf.recipes import RECIPES_DIR, expand_flagfiles

HELP_ARGS = {"-h", "-?", "--help", "-help", "--helpshort", "-helpshort", "--help=true",
             "--helpshort=true"}
FULL_HELP_ARGS = {"--helpfull", "-helpfull", "--helpfull=true"}
SCRIPT_GROUP = "This script"


def _show(value) -> str:
    """A flag default as the user would type it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "''" if value in ("", None) else str(value)


def help_text(flag_values: flags.FlagValues = flags.FLAGS, program: str = "") -> str:
    """The script's own flags grouped by the config class they mirror, with defaults."""
    program = program or os.path.basename(sys.argv[0])
    groups = flag_groups(flag_values)
    grouped = {n for names in groups.values() for n in names}
    main_module = sys.argv[0]
    own = [n for n, f in flag_values._flags().items() if n == f.name and n not in grouped
           and flag_values.find_module_defining_flag(n) == main_module]
    if own:
        groups = {SCRIPT_GROUP: own, **groups}
    doc = (sys.modules["__main__"].__doc__ or "").strip()
    lines = [f"usage: {program} [--flagfile=recipe.flags] [--flag=value ...]", ""]
    if doc:
        lines += [doc, ""]
    for group, names in groups.items():
        lines.append(f"{group}:")
        for name in names:
            flag = flag_values[name]
            choices = getattr(getattr(flag, "parser", None), "enum_values", None)
            head = f"  --{name} (default: {_show(flag.default)})"
            if choices:
                head += f" [one of: {', '.join(choices)}]"
            lines.append(head)
            lines += textwrap.wrap(flag.help or "", 92, initial_indent="      ",
                                   subsequent_indent="      ")
        lines.append("")
    lines.append(f"--flagfile=FILE reads flags from FILE (one per line; paths in it are "
                 f"relative to FILE). Shipped recipes: {RECIPES_DIR} (python -m slm_tf.recipes)."
                 f" --helpfull also lists absl's own flags.")
    return "\n".join(lines)


def parse_flags(argv):
    """absl ``flags_parser``: answers --help/--helpshort/--helpfull (exit 0), expands
    flagfiles with recipe-relative paths, then parses as absl would."""
    for arg in argv[1:]:
        if arg == "--":
            break
        if arg in HELP_ARGS or arg in FULL_HELP_ARGS:
            print(help_text())
            if arg in FULL_HELP_ARGS:
                print("\nabsl and library flags:\n" + flags.FLAGS.get_help())
            sys.exit(0)
    try:
        expanded = expand_flagfiles(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return app.parse_flags_with_usage(expanded)


def run(main) -> None:
    """``app.run(main)`` with :func:`parse_flags` as the flag parser."""
    app.run(main, flags_parser=parse_flags)


# TensorFlow's C++ notices (start-up and the odd one mid-run, e.g. oneDNN's DT_INT64 fallback):
# absl's C++ logger writes them straight to file descriptor 2 before any threshold applies
# (TF_CPP_MIN_LOG_LEVEL does not reach them on TF 2.21), so they are filtered at the descriptor.
_TF_NOISE = ("absl::InitializeLog", "cuda", "cuInit", "oneDNN", "TF_ENABLE_ONEDNN_OPTS",
             "TensorRT", "TF-TRT", "rebuild TensorFlow with the appropriate compiler flags",
             "computation placer", "Unable to register")
# Runs in a child process so that whatever the script prints last (a crash, faulthandler) still
# reaches the terminal: the child drains the pipe until every writer has exited.
_FILTER = ("import os, signal, sys\n"
           "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
           "noise = [n.encode() for n in sys.argv[1:]]\n"
           "for line in sys.stdin.buffer:\n"
           "    if not any(n in line for n in noise):\n"
           "        os.write(2, line)\n")
_filtering = False


def filter_tensorflow_notices() -> None:
    """Routes file descriptor 2 through a child process that drops TensorFlow's C++ notices
    (CUDA probing, oneDNN, absl::InitializeLog) and passes every other line, our absl log
    lines and real errors included, to the real stderr. Call before TensorFlow loads."""
    global _filtering
    if _filtering or os.environ.get("SLM_TF_RAW_STDERR"):
        return
    import atexit
    import subprocess
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    child = subprocess.Popen([sys.executable, "-S", "-c", _FILTER, *_TF_NOISE],
                             stdin=read_end, start_new_session=True)  # Ctrl-C: the script's
    os.close(read_end)
    real_stderr = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    _filtering = True

    @atexit.register
    def _drain():  # the last lines reach the terminal before the shell prompt does
        sys.stderr.flush()
        os.dup2(real_stderr, 2)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _check_before_tensorflow(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Checks what needs no TensorFlow (data paths, the output folder) so a typo fails in well
    under a second."""
    if all(f.name in flag_values for f in dataclasses.fields(DataConfig)):
        # A language model's --validation_data/--test_data may list documents of --data by name.
        lm = "task" in flag_values and flag_values["task"].value == "lm"
        check_paths(from_flags(DataConfig, flag_values), split_names=lm)
    if "output_dir" in flag_values and flag_values["output_dir"].value:
        require_output_dir(flag_values["output_dir"].value)


def friendly_errors(main):
    """Wraps an absl ``main``: a user error (including a stray positional argument) prints one
    clear line and exits with status 2."""
    @functools.wraps(main)
    def wrapper(argv):
        quiet_libraries()
        try:
            if len(argv) > 1:
                raise UserError(f"unexpected arguments {argv[1:]}; every option is a --flag")
            _check_before_tensorflow()
            filter_tensorflow_notices()
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
