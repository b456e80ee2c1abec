import os
import signal
import subprocess
import sys

import pytest

import slm_tf  # noqa: F401  (pins Keras 2 before any test imports TensorFlow)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("SLM_TF_SHARED_DATA",
                             os.path.join(REPO, "..", "shared", "data"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of several minutes")
    config.addinivalue_line("markers", "integration: runs scripts, trains for more than a few "
                            "seconds or starts a service (CI runs them; the unit layer, "
                            "-m 'not slow and not integration', does not)")


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data (banking77, clinc150, medical_abstracts); tests need it, never skip it."""
    if not os.path.isdir(os.path.join(SHARED_DATA, "clinc150")):
        raise RuntimeError(f"{SHARED_DATA} not found: set SLM_TF_SHARED_DATA to the shared data "
                           "folder (it holds clinc150/ and medical_abstracts/)")
    return os.path.abspath(SHARED_DATA)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One tfds data dir for the whole session, so each source is prepared once."""
    return str(tmp_path_factory.mktemp("tfds"))


def run_script(name, *args, timeout=600, check=True):
    """Runs scripts/<name>.py in a fresh interpreter; returns the CompletedProcess."""
    cmd = [sys.executable, os.path.join(REPO, "scripts", f"{name}.py"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


def finished_run(path, metrics, task="classification"):
    """The files that make a run folder complete (placeholders, not a model): for scripts that
    aggregate finished runs (benchmarks with --reuse_complete / --notrain)."""
    import json
    os.makedirs(os.path.join(path, "saved_model"))
    os.makedirs(os.path.join(path, "tokenizer"))
    open(os.path.join(path, "model.keras"), "wb").close()
    files = [("config.json", {"train": {"task": task}, "data": {}}), ("metrics.json", metrics)]
    if task == "classification":
        files.append(("labels.json", ["a", "b"]))  # its task's own artifact
    for name, content in files:
        with open(os.path.join(path, name), "w") as f:
            json.dump(content, f)


def write_csv(path, rows, header=("text", "label")):
    import csv
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


# Runs a script with one extra callback in ``<module>.fit`` that SIGKILLs the process after a
# given batch, so the kill lands mid-epoch however fast or slow the machine is (polling for
# checkpoint files raced with tiny epochs on a busy CI machine and sometimes killed the run
# after training had already ended).
_KILL_AT_BATCH = """
import importlib, os, runpy, signal, sys
import slm_tf  # pins Keras 2 before TensorFlow loads, as the scripts do
import tf_keras as keras
module, epoch_to_kill, batch_to_kill = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

class KillAt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == epoch_to_kill and batch == batch_to_kill:
            os.kill(os.getpid(), signal.SIGKILL)

owner = importlib.import_module(module)
fit = owner.fit
def fit_then_die(*args, **kwargs):
    kwargs["extra_callbacks"] = (*kwargs.get("extra_callbacks", ()), KillAt())
    return fit(*args, **kwargs)
owner.fit = fit_then_die
sys.argv = sys.argv[4:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_script_killed_at(name, fit_module, epoch, batch, *args, timeout=900):
    """Runs scripts/<name>.py and SIGKILLs it when a ``fit`` called from ``fit_module`` ends
    ``batch`` of ``epoch`` (both 0-based); asserts it died that way."""
    cmd = [sys.executable, "-c", _KILL_AT_BATCH, fit_module, str(epoch), str(batch),
           os.path.join(REPO, "scripts", f"{name}.py"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == -signal.SIGKILL, (
        f"{name} exited {proc.returncode} instead of being killed at epoch {epoch} batch "
        f"{batch}\n{proc.stderr[-3000:]}")
