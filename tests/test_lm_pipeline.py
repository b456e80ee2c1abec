"""The language-model line end to end on a toy corpus: pipeline.py --task=lm (teacher ->
student -> distilled -> pruned -> QAT -> report), killed during distillation and resumed
without redoing the teacher; compress.py's LM report and distill.py's LM student inside it."""
import json
import os

import pytest

from conftest import run_script, run_script_killed_at

pytestmark = pytest.mark.integration  # runs the real scripts end to end

SLOW_MACHINE = 1800
LINES = ["the cat sat on the mat and the dog sat on the log.\n",
         "a bird in the hand is worth two in the bush.\n",
         "all that glitters is not gold; all that wanders is not lost.\n"]
TINY = ["--task=lm", "--tokenizer=char_exact", "--min_frequency=1", "--model=gpt",
        "--num_heads=2", "--max_seq_len=32", "--batch_size=16", "--learning_rate=5e-3",
        "--dropout=0.0", "--baseline=false"]


def _write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def _corpus(folder, n_docs=6):
    os.makedirs(folder, exist_ok=True)
    for i in range(n_docs):
        with open(os.path.join(folder, f"doc{i}.txt"), "w", encoding="utf-8") as f:
            f.write("".join(LINES[(i + j) % len(LINES)] for j in range(20)))
    return str(folder)


def test_lm_pipeline_resumes_after_kill_in_distillation(tmp_path):
    data = _corpus(tmp_path / "corpus")
    teacher = _write(tmp_path / "teacher.flags", TINY + ["--hidden_dim=32", "--num_layers=2",
                                                         "--ff_dim=64", "--epochs=1"])
    student = _write(tmp_path / "student.flags", TINY + ["--hidden_dim=16", "--num_layers=1",
                                                         "--ff_dim=32", "--epochs=2"])
    out = tmp_path / "pipe"
    args = ["--task=lm", f"--data={data}", "--test_data=doc0.txt", "--validation_data=doc1.txt",
            f"--data_dir={tmp_path / 'tfds'}", f"--teacher_recipe={teacher}",
            f"--student_recipe={student}", "--export_formats=", "--temperature=2",
            f"--output_dir={out}"]
    # Killed in the second epoch of distillation (its fit is slm_tf.distill.lm's).
    run_script_killed_at("pipeline", "slm_tf.distill.lm", 1, 2, *args, timeout=SLOW_MACHINE)
    teacher_model = out / "teacher" / "model.keras"
    assert teacher_model.exists() and (out / "student" / "metrics.json").exists()
    assert not (out / "distilled" / "metrics.json").exists()
    stamp = os.path.getmtime(teacher_model)

    run_script("pipeline", *args, timeout=SLOW_MACHINE)
    assert os.path.getmtime(teacher_model) == stamp  # the teacher was not redone
    distilled = json.load(open(out / "distilled" / "metrics.json"))
    assert distilled["task"] == "lm" and distilled["resumed_at_epoch"] == 1
    t = json.load(open(out / "teacher" / "metrics.json"))
    assert distilled["teacher_bits_per_character"] == pytest.approx(t["bits_per_character"])
    assert distilled["num_params"] < t["num_params"] / 4
    # The student shares the teacher's vocabulary (token-level KD needs one).
    assert open(out / "distilled" / "tokenizer" / "tokenizer.json").read() == \
        open(out / "teacher" / "tokenizer" / "tokenizer.json").read()

    pruned = json.load(open(out / "pruned" / "compression.json"))
    assert pruned["mode"] == "prune" and pruned["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert pruned["bits_per_character_before"] == pytest.approx(
        distilled["bits_per_character"], rel=1e-4)
    qat = json.load(open(out / "qat" / "compression.json"))
    assert qat["stages"] == ["qat"]
    assert qat["stage_plans"]["qat"]["scheme"] == "prune_preserve"
    assert qat["sparsity"] >= 0.45  # QAT kept the pruned zeros

    summary = json.load(open(out / "summary.json"))
    final = summary["final"]
    assert summary["task"] == "lm" and final["stage"] == "qat"
    assert final["bits_per_character"] == pytest.approx(
        json.load(open(out / "qat" / "metrics.json"))["bits_per_character"])
    assert final["teacher_bits_per_character"] == pytest.approx(t["bits_per_character"])
    report = open(out / "report.md", encoding="utf-8").read()
    assert "Greedy continuations" in report and "| qat (Keras) |" in report
    assert (out / "bpc_vs_size.png").exists() and (out / "bpc_vs_tokens_per_s.png").exists()
    assert (out / "model_card.md").exists() and (out / "report.html").exists()
