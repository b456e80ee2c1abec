"""The named-entity line end to end on a toy Chinese CoNLL file: pipeline.py --task=ner
(teacher -> student -> distilled -> pruned -> QAT -> int8 export -> benchmark -> report),
killed during distillation and resumed without redoing the teacher; compress.py's NER branch
(pruning and QAT of a CRF tagger, the teacher distilling) runs inside it."""
import json
import os

import pytest

from conftest import run_script, run_script_killed_at
from test_ner_export import _msra_like

pytestmark = pytest.mark.integration  # runs the real scripts end to end

TINY = ["--task=ner", "--tokenizer=char", "--model=cnn", "--kernel_sizes=3", "--crf",
        "--hidden_dim=0", "--bigram_buckets=64", "--max_seq_len=24", "--batch_size=16",
        "--learning_rate=1e-2", "--baseline=false"]


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_ner_pipeline_resumes_after_kill_in_distillation(tmp_path):
    train = _msra_like(tmp_path / "train.txt", 120, 0)
    test = _msra_like(tmp_path / "test.txt", 30, 1)
    # Convolutional taggers only: an unrolled GRU converts slowly (the GRU tagger's QAT is a
    # unit test in test_ner_cnn_tagger.py).
    teacher = _write(tmp_path / "teacher.flags", TINY + [
        "--embedding_dim=16", "--num_filters=16", "--dilations=1,2", "--epochs=6"])
    student = _write(tmp_path / "student.flags", TINY + [
        "--embedding_dim=8", "--num_filters=8", "--dilations=1", "--epochs=2"])
    out = tmp_path / "pipe"
    args = ["--task=ner", f"--data={train}", f"--test_data={test}",
            f"--data_dir={tmp_path / 'tfds'}", f"--teacher_recipe={teacher}",
            f"--student_recipe={student}", "--prune=0.5", "--prune_epochs=1",
            "--qat_epochs=1", "--export_formats=tflite_int8", "--latency_queries=5",
            "--teacher_latency_queries=5", f"--output_dir={out}"]
    # Killed in the second epoch of distillation (its fit is slm_tf.distill.ner's).
    run_script_killed_at("pipeline", "slm_tf.distill.ner", 1, 2, *args)
    teacher_model = out / "teacher" / "model.keras"
    assert teacher_model.exists() and (out / "student" / "metrics.json").exists()
    assert not (out / "distilled" / "metrics.json").exists()
    stamp = os.path.getmtime(teacher_model)

    proc = run_script("pipeline", *args)
    assert os.path.getmtime(teacher_model) == stamp  # the teacher was not redone
    distilled = json.load(open(out / "distilled" / "metrics.json"))
    assert distilled["task"] == "ner" and distilled["resumed_at_epoch"] == 1
    t = json.load(open(out / "teacher" / "metrics.json"))
    assert t["entity_f1"] > 0.5  # the toy sentences are learnable

    pruned = json.load(open(out / "pruned" / "compression.json"))
    assert pruned["mode"] == "prune"
    targets = [r for r in pruned["layers"] if r["prune_target"]]
    assert {r["layer"] for r in targets} >= {"token_embedding", "conv3", "logits"}
    for row in targets:  # every pruned kernel reached the target
        assert row["sparsity"] == pytest.approx(0.5, abs=0.02), row
    assert pruned["distillation"]["teacher_dir"] == str(out / "teacher")
    assert pruned["entity_f1_before"] == pytest.approx(distilled["entity_f1"], abs=1e-9)
    qat = json.load(open(out / "qat" / "compression.json"))
    assert qat["stages"] == ["qat"] and qat["stage_plans"]["qat"]["scheme"] == "prune_preserve"
    assert qat["after"]["size"]["tflite_quantization"] == "int8"

    summary = json.load(open(out / "summary.json"))
    final = summary["final"]
    assert summary["task"] == "ner" and final["format"] == "tflite_int8"
    bench = json.load(open(out / "export" / "benchmark.json"))
    int8 = next(r for r in bench if r["format"] == "tflite_int8")
    assert final["accuracy"] == int8["entity_f1"]
    assert summary["per_type_f1"]["teacher"] == {k: v["f1"] for k, v in t["per_type"].items()}
    assert summary["per_type_f1"]["final"] == int8["per_type"]
    # The confusion of types counts every gold span once (rows other than O).
    conf = summary["type_confusion"]
    gold = sum(sum(row) for g, row in zip(conf["labels"], conf["matrix"]) if g != "O")
    assert gold == sum(v["support"] for v in t["per_type"].values())
    names = [r["name"] for r in summary["rows"]]
    for stage in ("teacher (Keras)", "student (Keras)", "distilled (Keras)", "pruned (Keras)",
                  "qat (Keras)", "final tflite_int8"):
        assert stage in names
    report = open(out / "report.md", encoding="utf-8").read()
    assert "entity F1" in report and "## Entity F1 per type" in report
    assert "## Confusion of entity types" in report and "| PER |" in report
    for name in ("report.html", "model_card.md", "per_type_f1.png", "type_confusion.png"):
        assert (out / name).exists(), name
    assert "entity F1" in proc.stdout
