import os
import subprocess
import sys

import pytest

import slm_tf  # noqa: F401  (pins Keras 2 before any test imports TensorFlow)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("SLM_TF_SHARED_DATA",
                             os.path.join(REPO, "..", "shared", "data"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of several minutes")


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


def write_csv(path, rows, header=("text", "label")):
    import csv
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)
