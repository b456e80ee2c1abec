"""The one-command pipeline on a small intent CSV with tiny recipes: every stage runs, the report
reads its numbers from the stages' own files, a SIGKILL during distillation resumes without
redoing the teacher, and a rerun of a finished pipeline skips every stage."""
import json
import os

import pytest

from conftest import run_script, run_script_killed_at
from test_end_to_end import _banking_subset

pytestmark = pytest.mark.integration  # runs the real scripts end to end

RECIPE = """--model=cnn
--embedding_dim={dim}
--num_filters={dim}
--kernel_sizes=2,3
--hidden_dim=0
--max_seq_len=24
--vocab_size=800
--batch_size=32
--learning_rate=5e-3
--epochs={epochs}
--validation_fraction=0.1
--checkpoint_every_steps=5
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("pipe")
    data = _banking_subset(root / "intents.csv", n_labels=10, per_label=60, bad_row=False)
    (root / "teacher.flags").write_text(RECIPE.format(dim=48, epochs=4))
    (root / "student.flags").write_text(RECIPE.format(dim=16, epochs=6))
    args = [f"--data={data}", "--text_column=utterance", "--label_column=intent",
            f"--data_dir={data_dir}", f"--teacher_recipe={root / 'teacher.flags'}",
            f"--student_recipe={root / 'student.flags'}", "--augment_copies=1",
            "--prune=0.5", "--prune_epochs=1", "--qat", "--qat_epochs=1",
            "--export_formats=tflite_int8,tflite_float", "--latency_queries=20",
            "--teacher_latency_queries=20", "--seed=7"]
    return root, args


def test_sigkill_during_distillation_then_rerun_finishes_without_redoing_the_teacher(setup):
    root, args = setup
    out = str(root / "killed")
    # Killed at batch 7 of the third distillation epoch (step checkpoints every 5 batches).
    run_script_killed_at("pipeline", "slm_tf.distill.run", 2, 7, *args, f"--output_dir={out}")
    assert os.listdir(os.path.join(out, "distilled", "checkpoints", "backup"))
    teacher_metrics = os.path.join(out, "teacher", "metrics.json")
    stamp = os.path.getmtime(teacher_metrics)
    assert not os.path.exists(os.path.join(out, "distilled", "metrics.json"))
    rerun = run_script("pipeline", *args, f"--output_dir={out}", timeout=900)
    assert "teacher: complete" in rerun.stderr and "student: complete" in rerun.stderr
    assert os.path.getmtime(teacher_metrics) == stamp
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["stages"]["teacher"]["ran"] is False
    assert summary["stages"]["distilled"]["ran"] is True
    distilled = json.load(open(os.path.join(out, "distilled", "metrics.json")))
    assert distilled["resumed_at_epoch"] == 2

    # A finished pipeline reruns as a no-op: every stage is skipped.
    again = run_script("pipeline", *args, f"--output_dir={out}", timeout=600)
    assert again.stderr.count(": complete in ") == 7
    _check_report(out)


def _check_report(out):
    summary = json.load(open(os.path.join(out, "summary.json")))
    for name in ("report.md", "report.html", "model_card.md", "accuracy_vs_size.png",
                 "accuracy_vs_latency.png", "confusion_matrix.png", "per_class_f1.png",
                 "reliability.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    # Every row's numbers are the ones in the stage's own metrics/benchmark file.
    rows = {r["name"]: r for r in summary["rows"]}
    for stage in ("teacher", "student", "distilled", "pruned", "qat"):
        # --seed=7 reaches every training stage (the recipes leave the default, 42).
        assert json.load(open(os.path.join(out, stage, "config.json")))["train"]["seed"] == 7
        m = json.load(open(os.path.join(out, stage, "metrics.json")))
        assert rows[f"{stage} (Keras)"]["accuracy"] == m["accuracy"]
        assert rows[f"{stage} (Keras)"]["num_params"] == m["num_params"]
    bench = {r["format"]: r for r in json.load(open(os.path.join(out, "export",
                                                                 "benchmark.json")))}
    for fmt in ("tflite_int8", "tflite_float"):
        row = rows[f"final {fmt}"]
        for key in ("accuracy", "macro_f1", "file_bytes", "p50_ms_1t"):
            assert row[key] == bench[fmt][key], (fmt, key)
    teacher_ref = json.load(open(os.path.join(out, "teacher_export", "benchmark.json")))[1]
    assert rows["teacher tflite_float"]["p50_ms_1t"] == teacher_ref["p50_ms_1t"]
    final = summary["final"]
    for key in ("accuracy", "macro_f1", "file_bytes", "p50_ms_1t", "teacher_accuracy"):
        assert final[key] is not None
    assert final["teacher_accuracy"] == rows["teacher (Keras)"]["accuracy"]
    assert final["speedup_vs_teacher"] == pytest.approx(
        teacher_ref["p50_ms_1t"] / final["p50_ms_1t"])
    # The classical baseline is a row read from the stages' metrics, and the verdict compares.
    base = json.load(open(os.path.join(out, "qat", "metrics.json")))["baseline"]
    assert rows["baseline (TF-IDF + linear)"]["accuracy"] == base["accuracy"]
    assert final["baseline_accuracy"] == base["accuracy"] and base["accuracy"] > 0.85
    report = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    assert f"{final['accuracy']:.4f}" in report
    assert "classical baseline" in report and f"{base['accuracy']:.4f}" in report
    # What each stage cost against the one before it, from the same rows; the final file's
    # ECE before/after temperature is its benchmark's.
    # Pruning starts from the better student on validation (--compress_from=better; a tie
    # keeps the labels-only one), and is costed against it.
    val = {s: json.load(open(os.path.join(out, s, "metrics.json")))["validation"]["accuracy"]
           for s in ("student", "distilled")}
    source = "student" if val["student"] >= val["distilled"] else "distilled"
    pruned_from = json.load(open(os.path.join(out, "pruned", "config.json")))["compress"]["run_dir"]
    assert os.path.basename(pruned_from) == source
    costs = {c["stage"]: c for c in summary["stage_costs"]}
    assert costs["pruned"]["previous"] == source
    assert costs["pruned"]["points"] == pytest.approx(
        (rows["pruned (Keras)"]["accuracy"] - rows[f"{source} (Keras)"]["accuracy"]) * 100)
    assert "## What each stage cost" in report and costs["qat"]["text"] in report
    cal = bench["tflite_int8"]["calibration"]
    assert rows["final tflite_int8"]["ece_after"] == cal["ece_after"]
    assert rows["final tflite_int8"]["ece_before"] == cal["ece_before"]
    card = open(os.path.join(out, "model_card.md"), encoding="utf-8").read()
    assert "## Intended use" in card and "## Calibration" in card and "pipeline.py" in card
