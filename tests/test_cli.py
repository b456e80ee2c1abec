"""The command line: --help lists each script's own flags grouped by config (exit 0), flag and
path errors answer before TensorFlow loads, and TensorFlow's start-up notices stay out of the
user's terminal while our own log lines stay in."""
import ast
import dataclasses
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_script, write_csv

SCRIPTS = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "scripts")) if f.endswith(".py"))
NOISE = ("absl::InitializeLog", "cuInit", "cuda", "oneDNN", "cudart_stub", "TF-TRT")


def _script_configs(name):
    """Every config class a script passes to define_flags (directly or in a ``for`` loop over a
    tuple), read from its source: the script is the oracle, not the help printer."""
    import importlib
    tree = ast.parse(open(os.path.join(REPO, "scripts", f"{name}.py"), encoding="utf-8").read())
    modules, tuples, used = {}, {}, set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            modules.update({a.name: node.module for a in node.names if a.name.endswith("Config")})
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
            tuples[node.targets[0].id] = [e.id for e in node.value.elts if isinstance(e, ast.Name)]
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and \
                getattr(node.value.func, "id", "") == "define_flags":
            used.add(node.value.args[0].id)
        if isinstance(node, ast.For):
            it = node.iter
            if isinstance(it, ast.Name):
                used |= set(tuples.get(it.id, []))
            elif isinstance(it, ast.Tuple):
                used |= {e.id for e in it.elts if isinstance(e, ast.Name)}
    return [getattr(importlib.import_module(modules[c]), c) for c in sorted(used)]


def _script_defaults(name):
    """Defaults a script sets over its configs' (``for _name, _value in X.items():
    flags.set_default(...)``, e.g. compress.py's FINETUNE_DEFAULTS, train_lm.py's LM_DEFAULTS):
    the dict X itself, imported from where the script imports it."""
    import importlib
    tree = ast.parse(open(os.path.join(REPO, "scripts", f"{name}.py"), encoding="utf-8").read())
    where = {a.name: n.module for n in tree.body if isinstance(n, ast.ImportFrom)
             for a in n.names}
    out = {}
    for node in tree.body:
        it = getattr(node, "iter", None)
        if isinstance(node, ast.For) and isinstance(it, ast.Call) and \
                getattr(it.func, "attr", "") == "items" and isinstance(it.func.value, ast.Name):
            out.update(getattr(importlib.import_module(where[it.func.value.id]),
                               it.func.value.id))
    return out


def _shown(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "''" if value == "" else str(value)


@pytest.mark.integration
@pytest.mark.parametrize("name", SCRIPTS)
def test_help_lists_own_flags_grouped_by_config(name):
    for flag in ("--help", "--helpshort"):
        proc = run_script(name, flag, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        for noise in ("--tpu", "--tfds", "--xla", "--only_check_args", "--test_srcdir"):
            assert noise not in out, f"{name} {flag} shows {noise} (library flags)"
        sections = {}
        current = None
        for line in out.splitlines():
            if line and not line.startswith(" ") and line.endswith(":"):
                current = line[:-1]
            elif line.startswith("  --") and current:
                sections.setdefault(current, []).append(line.strip())
        for cls in _script_configs(name):
            assert cls.__name__ in sections, f"{name}: no {cls.__name__} section in\n{out}"
            for f in dataclasses.fields(cls):
                default = f.default if f.default is not dataclasses.MISSING \
                    else f.default_factory()
                default = _script_defaults(name).get(f.name, default)
                want = f"--{f.name} (default: {_shown(default)})"
                if any(line.startswith(want) for line in sections[cls.__name__]):
                    continue
                # distill.py and pipeline.py define some fields through an earlier config
                owner = [s for s, lines in sections.items()
                         if any(line.startswith(want) for line in lines)]
                assert owner, f"{name} {flag}: {want} missing from\n{out}"
    full = run_script(name, "--helpfull", timeout=300, check=False)
    assert full.returncode == 0, full.stderr


@pytest.mark.integration
def test_script_flags_outside_configs_are_listed():
    out = run_script("benchmark", "--help", timeout=60).stdout
    assert "--export_dir" in out and "--latency_queries (default: 300)" in out


@pytest.mark.integration
@pytest.mark.parametrize("args,message", [
    (["--data=no/such/file.csv", "--output_dir=runs/x"], "no/such/file.csv: no such file"),
    (["--epochs=0", "--output_dir=runs/x"], "--epochs must be > 0"),
    (["--flagfile=no_such.flags"], "no_such.flags"),
])
def test_errors_answer_before_tensorflow_loads(args, message):
    # Deterministic, not timed: the script runs in an interpreter that reports, as it exits
    # with the error, whether TensorFlow was ever imported (loading it costs ~5 s idle).
    code = ("import runpy, sys\n"
            "sys.argv = sys.argv[1:]\n"
            "try:\n"
            "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "finally:\n"
            "    print('tensorflow loaded:', 'tensorflow' in sys.modules, file=sys.stderr)\n")
    script = os.path.join(REPO, "scripts", "train.py")
    proc = subprocess.run([sys.executable, "-c", code, script, *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "tensorflow loaded: False" in proc.stderr, proc.stderr


def test_config_modules_import_without_tensorflow():
    code = ("import sys, slm_tf.cli, slm_tf.models, slm_tf.tokenizers, slm_tf.train.config, "
            "slm_tf.distill.config, slm_tf.export.config, slm_tf.compress.config, "
            "slm_tf.pipeline.config, slm_tf.recipes\n"
            "from slm_tf.models import ModelConfig\nfrom slm_tf.tokenizers import TokenizerConfig\n"
            "print(sorted(m for m in ('tensorflow', 'tf_keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.strip() == "[]"


def test_old_import_paths_still_work():
    from slm_tf.distill.augment import AugmentConfig
    from slm_tf.distill.config import AugmentConfig as A2, DistillConfig
    from slm_tf.distill.run import DistillConfig as D2
    from slm_tf.models import ModelConfig, build_model
    from slm_tf.models.base import ModelConfig as M2
    from slm_tf.tokenizers import TokenizerConfig, build_tokenizer
    from slm_tf.train.trainer import ExperimentConfig, TrainConfig
    from slm_tf.train.config import ExperimentConfig as E2, TrainConfig as T2
    assert (AugmentConfig, DistillConfig, ModelConfig, TrainConfig, ExperimentConfig) == \
        (A2, D2, M2, T2, E2)
    assert callable(build_model) and callable(build_tokenizer) and TokenizerConfig().tokenizer


@pytest.mark.integration
def test_short_run_logs_ours_without_tensorflow_notices(tmp_path, data_dir):
    rows = [(f"{w} please {i}", w) for i in range(12) for w in ("card", "refund", "rate")]
    write_csv(tmp_path / "d.csv", rows)
    proc = run_script("train", f"--data={tmp_path / 'd.csv'}", "--model=bow", "--epochs=1",
                      "--embedding_dim=8", "--hidden_dim=8", "--vocab_size=60",
                      "--max_seq_len=8", "--batch_size=8", "--nobaseline", f"--data_dir={data_dir}",
                      f"--output_dir={tmp_path / 'run'}", "--noauto_recipe", timeout=300)
    assert "trainer.py" in proc.stderr, proc.stderr  # our absl log lines (module:line] ...)
    lines = proc.stderr.splitlines()
    noisy = [ln for ln in lines if any(n in ln for n in NOISE)]
    assert not noisy, "\n".join(noisy)
