"""Bad inputs that used to crash or silently give wrong results: a huge CSV cell, --output_dir
that is a file, an empty validation/test split, a missing teacher, tool folders in a folder
dataset, labels with line breaks or control characters. All are found before any training."""
import json
import logging
import re

import pytest

from conftest import run_script, write_csv
from slm_tf.data.config import DataConfig
from slm_tf.data.pipeline import prepare_data
from slm_tf.data.readers import DataError, read_delimited, read_labelled
from slm_tf.errors import UserError
from slm_tf.io_utils import require_output_dir
from tiny_run import labelled_rows

BIG = 200_000  # > csv's default field limit of 131,072 characters


def test_a_cell_longer_than_csvs_default_limit_is_read_whole(tmp_path):
    long_text = ("a long legitimate document " * (BIG // 27 + 1))[:BIG]
    path = write_csv(tmp_path / "long.csv", [("short one", "x"), (long_text, "y"), ("ok", "x")])
    for on_bad_row in ("error", "skip"):
        rep = read_labelled(path, on_bad_row=on_bad_row)
        assert [len(e.text) for e in rep.examples] == [9, BIG, 2] and not rep.skipped


def test_a_cell_over_the_limit_names_its_line_or_is_skipped_and_counted(tmp_path):
    rows = [("fine", "x"), ("y" * 5000, "y"), ("also fine", "x"), ("z" * 5000, "y"),
            ("last", "y")]
    path = write_csv(tmp_path / "big.csv", rows)
    with pytest.raises(DataError, match=r"big\.csv:3: a cell has 5,000 characters, more than "
                                        r"the 1,000 allowed"):
        read_delimited(path, "text", "label", ",", max_field_chars=1000)
    rep = read_delimited(path, "text", "label", ",", "skip", max_field_chars=1000)
    assert [e.text for e in rep.examples] == ["fine", "also fine", "last"]
    assert rep.skipped == {"field_too_large": 2}


def test_output_dir_that_is_a_file_is_refused_up_front(tmp_path):
    existing = tmp_path / "results"
    existing.write_text("not a folder")
    with pytest.raises(UserError, match=r"results: --output_dir is an existing file"):
        require_output_dir(str(existing))
    with pytest.raises(UserError, match=r"inside .*results, which is a file"):
        require_output_dir(str(existing / "run"))
    require_output_dir(str(tmp_path / "new" / "run"))  # creatable: fine


@pytest.mark.integration
def test_train_and_export_refuse_an_output_dir_that_is_a_file(tmp_path):
    data = write_csv(tmp_path / "d.csv", labelled_rows(30))
    existing = tmp_path / "results"
    existing.write_text("keep me")
    proc = run_script("train", f"--data={data}", f"--output_dir={existing}",
                      f"--data_dir={tmp_path}/tfds", "--epochs=1", check=False, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"error: {existing}: --output_dir is an existing file" in proc.stderr
    assert existing.read_text() == "keep me" and not (tmp_path / "tfds").exists()
    proc = run_script("export", f"--run_dir={tmp_path}", f"--output_dir={existing}",
                      check=False, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"error: {existing}: --output_dir is an existing file" in proc.stderr


@pytest.mark.parametrize("flag", ["test", "validation"])
def test_a_zero_fraction_is_refused_with_the_fix_before_training(tmp_path, flag):
    data = write_csv(tmp_path / "d.csv", labelled_rows(30))
    cfg = DataConfig(data=data, data_dir=str(tmp_path / "tfds"), **{f"{flag}_fraction": 0.0})
    with pytest.raises(DataError, match=rf"the {flag} split is empty \(--{flag}_fraction=0 "
                                        rf"holds out nothing.*Fix: give --{flag}_data=<file>"):
        prepare_data(cfg)
    # With its own file the fraction is irrelevant, and the run prepares fine.
    own = write_csv(tmp_path / f"{flag}.csv", labelled_rows(9, seed=1))
    prepared = prepare_data(DataConfig(data=data, data_dir=str(tmp_path / "tfds"),
                                       **{f"{flag}_fraction": 0.0, f"{flag}_data": own}))
    assert prepared.splits.sizes()[flag] == 9


def test_too_few_examples_per_class_to_hold_out_is_refused(tmp_path):
    data = write_csv(tmp_path / "d.csv", labelled_rows(6))  # 2 per class: nothing held out
    with pytest.raises(DataError, match="no class has the 3 examples needed"):
        prepare_data(DataConfig(data=data, data_dir=str(tmp_path / "tfds")))


@pytest.mark.integration
def test_train_with_test_fraction_zero_stops_before_the_first_step(tmp_path):
    data = write_csv(tmp_path / "d.csv", labelled_rows(30))
    out = tmp_path / "run"
    proc = run_script("train", f"--data={data}", f"--output_dir={out}", "--test_fraction=0",
                      f"--data_dir={tmp_path}/tfds", "--epochs=1", check=False, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "the test split is empty" in proc.stderr and "--test_data" in proc.stderr
    assert not (out / "logs").exists() and not (out / "checkpoints").exists()  # never trained


@pytest.mark.integration
def test_distill_checks_the_teacher_before_creating_the_student_run(tmp_path):
    data = write_csv(tmp_path / "d.csv", labelled_rows(30))
    out = tmp_path / "student"
    proc = run_script("distill", f"--teacher_dir={tmp_path}/no_teacher", f"--data={data}",
                      f"--output_dir={out}", check=False, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "no_teacher: no such run folder" in proc.stderr and "--teacher_dir" in proc.stderr
    assert not out.exists()


def test_distill_refuses_a_missing_teacher_before_any_work(tmp_path):
    from slm_tf.distill.augment import AugmentConfig
    from slm_tf.distill.run import DistillConfig, DistillExperiment, distill
    from slm_tf.models import ModelConfig
    from slm_tf.tokenizers import TokenizerConfig
    from slm_tf.train.trainer import TrainConfig
    out = tmp_path / "student"
    exp = DistillExperiment(DataConfig(data=write_csv(tmp_path / "d.csv", labelled_rows(30))),
                            TokenizerConfig(), ModelConfig(), TrainConfig(output_dir=str(out)),
                            DistillConfig(teacher_dir=str(tmp_path / "half")), AugmentConfig())
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")  # a run that never finished
    with pytest.raises(UserError, match=r"half: not a complete run \(missing model\.keras, "
                                        r"saved_model.*--teacher_dir"):
        distill(exp)
    assert not out.exists()


def test_hidden_and_tool_folders_are_not_classes(tmp_path, caplog):
    root = tmp_path / "docs"
    for label in ("billing", "shipping", ".ipynb_checkpoints", "__MACOSX", "__pycache__",
                  ".git"):
        (root / label).mkdir(parents=True)
        (root / label / "a.txt").write_text(f"some text about {label}")
    (root / "billing" / ".~lock.b.txt").write_text("an editor's lock file")
    (root / "billing" / "b.txt").write_text("my invoice is wrong")
    with caplog.at_level(logging.INFO, logger="absl"):  # absl may have set its own level
        rep = read_labelled(str(root))
    assert sorted({e.label for e in rep.examples}) == ["billing", "shipping"]
    assert sorted(e.text for e in rep.examples) == ["my invoice is wrong", "some text about "
                                                    "billing", "some text about shipping"]
    logged = caplog.text
    for ignored in (".ipynb_checkpoints", "__MACOSX", "__pycache__", ".git", ".~lock.b.txt"):
        assert ignored in logged, (ignored, logged)


@pytest.mark.parametrize("label, char", [("card\nlost", "U+000A"), ("card\tlost", "U+0009"),
                                         ("card\u2028lost", "U+2028"),
                                         ("card\x85lost", "U+0085")])
def test_a_label_with_a_line_break_or_control_character_is_refused(tmp_path, label, char):
    rows = [("fine text", "a"), ("broken label row", label), ("more", "a")]
    path = write_csv(tmp_path / "l.csv", rows)
    with pytest.raises(DataError, match=rf"l\.csv:3: the label .* contains the control or "
                                        rf"line-break character\(s\) {re.escape(char)}"):
        read_labelled(path)
    rep = read_labelled(path, on_bad_row="skip")
    assert [e.text for e in rep.examples] == ["fine text", "more"]
    assert rep.skipped == {"bad_label": 1}
    jsonl = tmp_path / "l.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in rows))
    with pytest.raises(DataError, match=r"l\.jsonl:2: the label"):
        read_labelled(str(jsonl))
