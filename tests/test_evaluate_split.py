"""evaluate: a file that is not the run's training data is scored whole (60 rows -> 60
examples, not a 10% test split of it); the training data is scored on the run's own test split
(split with the run's own fractions); train/validation/test stay selectable."""
import json
import os

import pytest

from conftest import run_script, write_csv
from slm_tf.data.config import DataConfig
from slm_tf.evaluation import evaluate_run
from slm_tf.io_utils import read_json, write_json
from tiny_run import labelled_rows, make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    run_dir = str(tmp / "run")
    train_csv = make_run(run_dir, str(tmp / "tfds"))  # 30 rows, 10 per label
    # Trained with a 20% test split: 2 of each label's 10 rows, 6 in all.
    config = read_json(os.path.join(run_dir, "config.json"))
    config["data"]["test_fraction"] = 0.2
    write_json(os.path.join(run_dir, "config.json"), config)
    new_csv = write_csv(tmp / "new.csv", labelled_rows(60, seed=7))  # 20 per label
    return run_dir, train_csv, new_csv, str(tmp / "tfds")


def test_a_new_file_is_scored_whole(run):
    run_dir, _, new_csv, data_dir = run
    report = evaluate_run(run_dir, DataConfig(data=new_csv, data_dir=data_dir))
    assert report["split"] == "all" and report["num_examples"] == 60
    assert os.path.exists(os.path.join(run_dir, "eval", "new_all.json"))
    assert sum(map(sum, report["confusion_matrix"])) == 60


def test_splits_of_a_new_file_stay_selectable(run):
    run_dir, _, new_csv, data_dir = run
    cfg = DataConfig(data=new_csv, data_dir=data_dir)
    # 20 rows per label: 10% test = 2 per label; validation 10% of the remaining 18 = 2.
    assert evaluate_run(run_dir, cfg, "test", write=False)["num_examples"] == 6
    assert evaluate_run(run_dir, cfg, "validation", write=False)["num_examples"] == 6
    assert evaluate_run(run_dir, cfg, "train", write=False)["num_examples"] == 48


def test_the_training_data_is_scored_on_the_runs_own_test_split(run):
    run_dir, train_csv, _, data_dir = run
    # The evaluation flags keep their default --test_fraction=0.1; the run's 0.2 decides.
    report = evaluate_run(run_dir, DataConfig(data=train_csv, data_dir=data_dir))
    assert report["split"] == "test" and report["num_examples"] == 6
    # The same file under another path is still the training data (compared by content).
    copy = os.path.join(os.path.dirname(train_csv), "copy_of_train.csv")
    with open(train_csv, "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read())
    report = evaluate_run(run_dir, DataConfig(data=copy, data_dir=data_dir), write=False)
    assert report["split"] == "test" and report["num_examples"] == 6


def test_a_small_new_file_with_nothing_to_hold_out_is_still_scored(run):
    run_dir, _, _, data_dir = run
    small = write_csv(os.path.join(os.path.dirname(run_dir), "small.csv"), labelled_rows(5))
    report = evaluate_run(run_dir, DataConfig(data=small, data_dir=data_dir), write=False)
    assert report["num_examples"] == 5


@pytest.mark.integration
def test_evaluate_script_scores_all_60_rows_of_a_new_file(run):
    run_dir, _, new_csv, data_dir = run
    proc = run_script("evaluate", f"--run_dir={run_dir}", f"--data={new_csv}",
                      f"--data_dir={data_dir}", timeout=300)
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| new"))
    assert [c.strip() for c in row.strip("|").split("|")][:3] == ["new", "all", "60"]
    assert json.load(open(os.path.join(run_dir, "eval", "new_all.json")))["num_examples"] == 60
