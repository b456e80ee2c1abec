"""Loading a run never runs code from its files: a model.keras that is really an HDF5 file with
a Lambda layer, a Keras v3 archive naming a Lambda, and one naming a foreign module are all
refused with one line naming the file, and the Lambda's side effect never happens."""
import json
import os
import shutil
import zipfile

import pytest
import tf_keras as keras

from conftest import run_script
from slm_tf.errors import UserError
from slm_tf.train.artifacts import MODEL_FILE, load_run
from tiny_run import make_run


def _lambda_model(marker):
    """A model whose Lambda writes ``marker`` whenever Keras calls it (including when a loader
    rebuilds the model); the default argument travels with the serialized function."""
    def touch(x, path=marker):
        with open(path, "w") as f:
            f.write("code ran")
        return x
    inputs = keras.Input((8,))
    return keras.Model(inputs, keras.layers.Lambda(touch)(inputs))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("safe")
    make_run(str(tmp / "run"), str(tmp / "tfds"))
    return str(tmp / "run")


def _run_with_model(clean_run, tmp_path, write_model):
    run_dir = str(tmp_path / "run")
    shutil.copytree(clean_run, run_dir)
    marker = str(tmp_path / "MARKER")
    write_model(os.path.join(run_dir, MODEL_FILE), marker)
    assert os.path.exists(marker)  # building the Lambda model ran it once, symbolically
    os.remove(marker)
    return run_dir, marker


def _hdf5(path, marker):
    h5 = path[:-len(".keras")] + ".h5"
    _lambda_model(marker).save(h5, save_format="h5")
    os.replace(h5, path)


def _zip_with_lambda(path, marker):
    _lambda_model(marker).save(path)  # a real Keras v3 archive whose config names a Lambda


@pytest.mark.integration
def test_an_hdf5_model_with_a_lambda_is_refused_by_evaluate_and_export(clean_run, tmp_path):
    run_dir, marker = _run_with_model(clean_run, tmp_path, _hdf5)
    with open(os.path.join(run_dir, MODEL_FILE), "rb") as f:
        assert f.read(8) == b"\x89HDF\r\n\x1a\n"  # the crafted file really is HDF5
    data = os.path.join(os.path.dirname(clean_run), "train.csv")
    for script, args in (("evaluate", [f"--data={data}", f"--data_dir={tmp_path}/tfds"]),
                         ("export", ["--formats=tflite_float", f"--output_dir={tmp_path}/exp"])):
        proc = run_script(script, f"--run_dir={run_dir}", *args, check=False, timeout=300)
        assert proc.returncode == 2, (script, proc.stderr[-3000:])
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, proc.stderr[-3000:]
        assert os.path.join(run_dir, MODEL_FILE) in errors[0] and "refused" in errors[0]
        assert "HDF5" in errors[0]
        assert "Traceback" not in proc.stderr
        assert not os.path.exists(marker), f"{script} ran the Lambda stored in the file"
    assert not os.path.exists(f"{tmp_path}/exp/export.json")


def test_an_hdf5_model_with_a_lambda_is_refused_by_load_run(clean_run, tmp_path):
    run_dir, marker = _run_with_model(clean_run, tmp_path, _hdf5)
    with pytest.raises(UserError, match=r"model\.keras: refused: an HDF5 \(legacy Keras\) file"):
        load_run(run_dir)
    assert not os.path.exists(marker)


def test_a_keras_archive_naming_a_lambda_is_refused(clean_run, tmp_path):
    run_dir, marker = _run_with_model(clean_run, tmp_path, _zip_with_lambda)
    assert zipfile.is_zipfile(os.path.join(run_dir, MODEL_FILE))
    with pytest.raises(UserError, match=r"model\.keras: refused: .*Lambda layer") as e:
        load_run(run_dir)
    assert "\n" not in str(e.value)
    assert not os.path.exists(marker)


def test_every_load_model_in_slm_tf_passes_safe_mode():
    """Keras' own refusal of lambdas stays on wherever slm_tf loads a model (checked on the
    source: a call without ``safe_mode=True`` is a finding)."""
    import ast
    import slm_tf
    root = os.path.dirname(slm_tf.__file__)
    calls = []
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                if isinstance(node, ast.Call) and getattr(node.func, "attr",
                                                          getattr(node.func, "id", "")) \
                        == "load_model":
                    safe = [k for k in node.keywords if k.arg == "safe_mode"]
                    calls.append((path, node.lineno, bool(safe) and
                                  getattr(safe[0].value, "value", None) is True))
    assert calls, "no load_model call found: the scan is broken"
    assert all(ok for _, _, ok in calls), [c for c in calls if not c[2]]


def test_a_keras_archive_naming_a_foreign_module_is_refused(clean_run, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(clean_run, run_dir)
    path = os.path.join(run_dir, MODEL_FILE)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    # Keras imports the named module and hands back any function in it as, e.g., an activation.
    config = json.loads(members["config.json"])
    assert config["module"].startswith("slm_tf.")
    config["module"] = "os"
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(UserError, match=r"model\.keras: refused: .*module 'os'"):
        load_run(run_dir)


def test_a_clean_run_still_loads(clean_run):
    run = load_run(clean_run)
    assert run.label_names == ["card_lost", "exchange_rate", "refund"]
    assert run.model(run.tokenizer.encode(["lost card"], 8)).shape == (1, 3)
