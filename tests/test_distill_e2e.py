"""scripts/distill.py end to end: a small teacher, a cached then reused teacher pass, an
augmented and unlabeled transfer set, and a student run that loads alone."""
import glob
import json
import os

import pytest

from conftest import run_script
from test_end_to_end import TINY, _banking_subset

pytestmark = pytest.mark.integration  # runs the real scripts end to end


@pytest.fixture(scope="module")
def kd_data_dir(tmp_path_factory):
    """This module's own tfds dir: its cache-count assertions must not see other tests'
    teacher caches (the session-wide dir depends on test order)."""
    return str(tmp_path_factory.mktemp("kd_tfds"))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, kd_data_dir):
    data_dir = kd_data_dir
    tmp = tmp_path_factory.mktemp("kd")
    data = _banking_subset(tmp / "intents.csv", bad_row=False)
    out = str(tmp / "teacher")
    run_script("train", f"--data={data}", "--text_column=utterance", "--label_column=intent",
               f"--data_dir={data_dir}", f"--output_dir={out}", "--epochs=4", *TINY)
    return tmp, data, out


def test_distill_with_cache_augmentation_and_unlabeled_text(teacher, kd_data_dir):
    tmp, data, teacher_dir = teacher
    data_dir = kd_data_dir
    unlabeled = tmp / "domain.txt"
    unlabeled.write_text("how do i top up my card\nmy card has not arrived yet\n\n"
                         "what is the exchange rate today\n", encoding="utf-8")
    args = [f"--teacher_dir={teacher_dir}", f"--data={data}", "--text_column=utterance",
            "--label_column=intent", f"--data_dir={data_dir}", "--student=bow",
            "--embedding_dim=32", "--hidden_dim=32", "--max_seq_len=24", "--vocab_size=800",
            "--epochs=3", "--temperature=3", "--alpha=0.4", "--augment_copies=2",
            f"--unlabeled_data={unlabeled}", "--learning_rate=5e-3"]
    first = run_script("distill", *args, f"--output_dir={tmp / 's1'}")
    assert "computing" in first.stderr and "reusing" not in first.stderr
    caches = glob.glob(os.path.join(data_dir, "teacher_cache", "*.tfrecord"))
    assert len(caches) == 2  # train transfer set and validation
    # The second student also starts its embeddings from the teacher's (32 -> 16 wide by PCA).
    second = run_script("distill", *args, f"--output_dir={tmp / 's2'}", "--student=cnn",
                        "--num_filters=16", "--kernel_sizes=2", "--embedding_dim=16",
                        "--init_embeddings_from=teacher")
    assert "reusing the cache" in second.stderr
    assert f"student embeddings: {{'source': '{teacher_dir}'" in second.stderr
    assert sorted(glob.glob(os.path.join(data_dir, "teacher_cache", "*.tfrecord"))) == \
        sorted(caches)
    m = json.load(open(tmp / "s1" / "metrics.json"))
    counts = m["transfer_set"]
    assert counts["labelled"] > 300 and counts["augmented"] > 300 and counts["unlabeled"] == 3
    t = json.load(open(os.path.join(teacher_dir, "metrics.json")))
    assert m["teacher_accuracy"] == pytest.approx(t["accuracy"])
    assert 0.0 < m["teacher_agreement"] <= 1.0 and m["accuracy"] > 0.3
    cfg = json.load(open(tmp / "s1" / "config.json"))
    assert cfg["distill"]["temperature"] == 3 and cfg["augment"]["augment_copies"] == 2
    from slm_tf.train.artifacts import load_run
    student = load_run(str(tmp / "s1"))
    assert student.model.count_params() == m["num_params"]
    assert not any("teacher" in w.name for w in student.model.weights)
    from test_end_to_end import _tags
    tags = _tags(str(tmp / "s1" / "logs"))
    for tag in ("epoch_kd_loss", "epoch_ce_loss", "epoch_agreement", "epoch_temperature"):
        assert tag in tags, tag


def test_online_teacher_and_label_mismatch(teacher, kd_data_dir, tmp_path):
    tmp, data, teacher_dir = teacher
    data_dir = kd_data_dir
    out = run_script("distill", f"--teacher_dir={teacher_dir}", f"--data={data}",
                     "--text_column=utterance", "--label_column=intent", f"--data_dir={data_dir}",
                     "--student=bow", "--embedding_dim=16", "--hidden_dim=16",
                     "--max_seq_len=24", "--epochs=1", "--nocache_teacher",
                     "--feature_weight=0.5",
                     f"--output_dir={tmp_path / 'online'}")
    assert "computing" not in out.stderr
    m = json.load(open(tmp_path / "online" / "metrics.json"))
    assert m["cached_teacher"] is False
    from test_end_to_end import _tags
    assert "epoch_feature_loss" in _tags(str(tmp_path / "online" / "logs"))
    bad = run_script("distill", f"--teacher_dir={teacher_dir}", "--data=banking77",
                     f"--data_dir={data_dir}", f"--output_dir={tmp_path / 'bad'}", check=False)
    assert bad.returncode == 2 and "distil on the teacher's own dataset" in bad.stderr
