"""Every artifact slm_tf reads back (model.keras, tokenizer files, labels.json, config.json,
metrics.json, export.json, .tflite and .onnx files) gives one line naming the file, saying it
is corrupt or from an incompatible version, and the fix - never a stack trace."""
import json
import os
import shutil

import pytest

from conftest import run_script
from slm_tf.errors import CorruptArtifactError, UserError
from slm_tf.io_utils import read_json, write_json
from slm_tf.train.artifacts import load_run
from tiny_run import make_run


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corrupt")
    make_run(str(tmp / "run"), str(tmp / "tfds"))
    return str(tmp / "run")


def _copy(clean_run, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(clean_run, run_dir)
    return run_dir


def _truncate(path, keep=0.5):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:int(len(data) * keep)])


def _garbage(path, data=b"\x00\xff not what it should be \xfe" * 7):
    with open(path, "wb") as f:
        f.write(data)


def _one_line(e, path):
    text = str(e.value)
    assert "\n" not in text, text
    assert text.startswith(path), text
    return text


@pytest.mark.integration
def test_a_truncated_model_gives_one_line_in_evaluate(clean_run, tmp_path):
    run_dir = _copy(clean_run, tmp_path)
    model = os.path.join(run_dir, "model.keras")
    _truncate(model)
    data = os.path.join(os.path.dirname(clean_run), "train.csv")
    proc = run_script("evaluate", f"--run_dir={run_dir}", f"--data={data}",
                      f"--data_dir={tmp_path}/tfds", check=False, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "file signature not found" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and model in errors[0], proc.stderr[-3000:]
    assert "corrupt or from an incompatible version" in errors[0]
    assert "Fix: rerun" in errors[0]


@pytest.mark.parametrize("name, damage, match", [
    ("model.keras", _garbage, "not a Keras v3 archive"),
    ("labels.json", _truncate, "not valid JSON"),
    ("labels.json", lambda p: write_json(p, {"a": 1}), "not a list of label names"),
    ("config.json", _truncate, "not valid JSON"),
    ("config.json", lambda p: write_json(p, {"model": {}}), "lacks data.max_seq_len"),
    ("metrics.json", _garbage, "not UTF-8|not valid JSON"),
    ("tokenizer/tokenizer.json", _garbage, "not UTF-8|not valid JSON"),
    ("tokenizer/tokenizer.json", lambda p: write_json(p, {"type": "wordpiece"}),
     "lacks the setting"),
    ("tokenizer/vocab.txt", _garbage, "not UTF-8"),
    # A cut vocabulary would load and silently map every lost token to [UNK].
    ("tokenizer/vocab.txt", lambda p: _truncate(p, 0.6), "tokens but .*tokenizer.json says"),
])
def test_each_damaged_run_artifact_gives_one_line(clean_run, tmp_path, name, damage, match):
    run_dir = _copy(clean_run, tmp_path)
    path = os.path.join(run_dir, name)
    damage(path)
    with pytest.raises(CorruptArtifactError, match=match) as e:
        load_run(run_dir)
    text = _one_line(e, path)
    assert "corrupt or from an incompatible version" in text and "rerun" in text
    assert run_dir in text.split("Fix:")[1]  # the fix names the run to redo


def test_read_json_names_the_file_and_the_fix(tmp_path):
    path = str(tmp_path / "metrics.json")
    with open(path, "w") as f:
        f.write('{"accuracy": 0.9,')
    with pytest.raises(CorruptArtifactError, match=r"metrics\.json: not valid JSON .* line 1"):
        read_json(path, fix="rerun train.py")
    with pytest.raises(UserError, match=r"nope\.json: no such file"):
        read_json(str(tmp_path / "nope.json"))


def _export_dir(clean_run, tmp_path, files):
    out = tmp_path / "export"
    out.mkdir()
    manifest = {"run_dir": clean_run, "data": {}, "files": []}
    for name, data in files.items():
        with open(out / name, "wb") as f:
            f.write(data)
        manifest["files"].append({"format": name, "path": name, "file_bytes": len(data)})
    write_json(str(out / "export.json"), manifest)
    return str(out)


def _tflite_bytes(clean_run):
    from slm_tf.export.tflite import to_tflite
    run = load_run(clean_run)
    return to_tflite(run.model, "float", run.max_seq_len)


@pytest.mark.parametrize("name, make", [
    ("model_float.tflite", lambda run: _tflite_bytes(run)[:2000]),   # cut mid-flatbuffer
    ("model_int8.tflite", lambda run: b"TFL3" * 64),
    ("model.onnx", lambda run: b"\x08\x07garbage, not a protobuf" * 9),
])
def test_benchmark_refuses_a_damaged_export_file_in_one_line(clean_run, tmp_path, name, make):
    from slm_tf.export.benchmark import benchmark_export
    out = _export_dir(clean_run, tmp_path, {name: make(clean_run)})
    with pytest.raises(CorruptArtifactError, match="the runtime cannot open it") as e:
        benchmark_export(out, latency_queries=5)
    text = _one_line(e, os.path.join(out, name))
    assert "Fix: rerun scripts/export.py" in text


def test_benchmark_refuses_a_damaged_manifest(tmp_path):
    from slm_tf.export.benchmark import benchmark_export
    (tmp_path / "export.json").write_text(json.dumps({"files": []}))
    with pytest.raises(CorruptArtifactError, match=r"export\.json: lacks \['run_dir', 'data'\]"):
        benchmark_export(str(tmp_path))
