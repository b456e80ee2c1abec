"""pipeline.py --unlabeled_data: a registered dataset's training texts become the distilled
student's unlabeled transfer file; a path passes through unchanged."""
import csv
import os

from slm_tf.data.config import DataConfig
from slm_tf.data.sources import EMBEDDED_DIR
from slm_tf.pipeline.config import PipelineConfig
from slm_tf.pipeline.stages import Context, _unlabeled_file


def _ctx(tmp_path, unlabeled):
    return Context(PipelineConfig(output_dir=str(tmp_path), unlabeled_data=unlabeled), [])


def test_a_registered_dataset_is_written_one_training_text_per_line(tmp_path):
    path = _unlabeled_file(_ctx(tmp_path, "banking77"), DataConfig(data="clinc150_oos"))
    assert os.path.dirname(path) == str(tmp_path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[-1] == ""                                 # every text ends with a line break
    lines = lines[:-1]
    with open(os.path.join(EMBEDDED_DIR, "banking77", "train.csv"), encoding="utf-8") as f:
        train = {" ".join(r["text"].split()) for r in csv.DictReader(f)}
    # The training split (validation carved out of the 10,003 rows), nothing else, none empty.
    assert set(lines) <= train and 8500 < len(lines) < 10003 and all(lines)


def test_a_file_path_passes_through(tmp_path):
    given = str(tmp_path / "domain.txt")
    assert _unlabeled_file(_ctx(tmp_path, given), DataConfig()) == given
    assert _unlabeled_file(_ctx(tmp_path, ""), DataConfig()) == ""
    assert os.listdir(tmp_path) == []
