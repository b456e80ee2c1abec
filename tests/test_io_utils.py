"""Atomic artifact writes: whole or not at all, and readable like a plainly written file."""
import os
import stat

import pytest

from slm_tf.io_utils import atomic_path, read_json, write_json, write_text


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_failed_write_keeps_the_previous_version_and_leaves_no_temp(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(str(path), {"accuracy": 0.9})
    with pytest.raises(RuntimeError):
        with atomic_path(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write("{half")
            raise RuntimeError("crash mid-write")
    assert read_json(str(path)) == {"accuracy": 0.9}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_directory_replaces_the_previous_one_whole(tmp_path):
    path = tmp_path / "saved_model"
    for version in ("1", "2"):
        with atomic_path(str(path), is_dir=True) as tmp:
            write_text(os.path.join(tmp, "version.txt"), version)
    assert open(path / "version.txt").read() == "2"
    assert os.listdir(tmp_path) == ["saved_model"]


def test_artifacts_get_the_mode_a_plain_write_gets_not_the_private_temp_mode(tmp_path):
    write_text(str(tmp_path / "report.md"), "# report\n")
    with atomic_path(str(tmp_path / "bundle"), is_dir=True) as tmp:
        write_text(os.path.join(tmp, "labels.txt"), "a\n")
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    os.mkdir(tmp_path / "plain_dir")
    assert _mode(tmp_path / "report.md") == _mode(tmp_path / "plain.txt")
    assert _mode(tmp_path / "bundle" / "labels.txt") == _mode(tmp_path / "plain.txt")
    assert _mode(tmp_path / "bundle") == _mode(tmp_path / "plain_dir")
