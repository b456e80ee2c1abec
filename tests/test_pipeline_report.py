"""The pipeline report's stage costs and the guard on its recommendation, on hand-made rows."""
import pytest


def _rows(**acc):
    return [{"name": f"{s} (Keras)", "stage": s, "format": "keras", "accuracy": a}
            for s, a in acc.items()]


def test_report_says_what_each_stage_cost_and_warns_below_an_earlier_stage():
    """Each stage against the one before it, in points, with its knob; the recommendation is
    flagged when it is more than the margin below the best earlier student stage."""
    from slm_tf.pipeline.report import _verdict, earlier_stage_gap, stage_costs
    final = {"name": "final tflite_int8", "stage": "final", "format": "tflite_int8",
             "accuracy": 0.874, "file_bytes": 500_000, "p50_ms_1t": 0.05,
             "compression_vs_teacher": 10.0, "speedup_vs_teacher": 20.0}
    report = {"rows": _rows(teacher=0.92, student=0.88, distilled=0.90, pruned=0.877,
                            qat=0.876) + [final], "final": final,
              "teacher": {"accuracy": 0.92}}
    costs = {c["stage"]: c for c in stage_costs(report)}
    assert [c for c in costs] == ["student", "distilled", "pruned", "qat", "final"]
    assert costs["student"]["previous"] == "teacher"
    assert costs["student"]["points"] == pytest.approx(-4.0)
    assert costs["distilled"]["points"] == pytest.approx(2.0) and costs["distilled"]["knob"] is None
    assert costs["pruned"]["text"] == ("pruned: -2.30 pts vs distilled; lower --prune or raise "
                                       "--prune_epochs")
    assert costs["qat"]["points"] == pytest.approx(-0.1)
    assert costs["final"]["previous"] == "qat" and costs["final"]["points"] == pytest.approx(-0.2)
    report["costs"] = list(costs.values())
    # 0.900 (distilled) - 0.874 = 2.6 points: over a 1-point margin, under a 3-point one.
    gap = earlier_stage_gap(report, 0.01)
    assert gap["stage"] == "distilled" and gap["points"] == pytest.approx(2.6)
    assert gap["biggest_loss"].startswith("pruned: -2.30 pts vs distilled")
    assert earlier_stage_gap(report, 0.03) is None
    report["below_earlier_stage"] = gap
    verdict = _verdict(report)
    assert "2.60 points below the distilled model" in verdict
    report["below_earlier_stage"] = None
    assert "below the distilled" not in _verdict(report)
    assert "(95.0% of the teacher's 0.9200)" in _verdict(report)  # 0.874 / 0.92
    # A teacher that learned nothing (a short NER run: entity F1 0) still gets a report.
    report["teacher"]["accuracy"] = 0.0
    assert "(against the teacher's 0.0000)" in _verdict(report)


def test_compression_starts_from_the_better_student_on_validation():
    """--compress_from=better: the labels-only student when it is at least as accurate on
    validation as the distilled one (a tie too), else the distilled one; =distilled, other
    tasks and runs without a validation accuracy keep the distilled student."""
    from slm_tf.pipeline.compress_source import compress_source
    val = lambda a: {"validation": {"accuracy": a}}
    assert compress_source(val(0.9192), val(0.9133), "better", "classification")[0] == "student"
    assert compress_source(val(0.9192), val(0.9192), "better", "classification")[0] == "student"
    stage, reason = compress_source(val(0.7019), val(0.7115), "better", "classification")
    assert stage == "distilled" and "0.7115" in reason and "0.7019" in reason
    assert compress_source(val(0.95), val(0.90), "distilled", "classification")[0] == "distilled"
    assert compress_source(val(0.95), val(0.90), "better", "lm")[0] == "distilled"
    assert compress_source({}, val(0.90), "better", "classification")[0] == "distilled"


def test_a_stage_that_started_from_the_labels_only_student_is_costed_against_it():
    """QAT of the labels-only student: its cost is against the student, not the distilled
    model listed before it, and the report says where compression started and why."""
    from slm_tf.pipeline.report import compress_start_line, stage_costs
    final = {"name": "final tflite_int8", "stage": "final", "format": "tflite_int8",
             "accuracy": 0.9185}
    rows = _rows(teacher=0.9224, student=0.9195, distilled=0.9084, qat=0.9190)
    for r, v in zip(rows, (0.9259, 0.9192, 0.9133, 0.9190)):
        r["validation_accuracy"] = v
    rows[3]["input_stage"] = "student"
    costs = {c["stage"]: c for c in stage_costs({"rows": rows + [final], "final": final})}
    assert costs["qat"]["previous"] == "student"
    assert costs["qat"]["points"] == pytest.approx(-0.05)  # 0.9190 - 0.9195
    assert costs["distilled"]["previous"] == "student"
    line = compress_start_line({"rows": rows})
    assert "started from the student model" in line and "0.9192" in line and "0.9133" in line
    # The model card does not call the shipped student distilled.
    from slm_tf.pipeline.report import _lineage
    teacher = {"num_params": 22_713_293, "accuracy": 0.9224}
    assert _lineage({"rows": rows}, teacher).startswith("Trained on the labels alone")
    rows[3]["input_stage"] = "distilled"
    assert compress_start_line({"rows": rows}) == ""
    assert _lineage({"rows": rows}, teacher) == ("Distilled from a teacher with 22,713,293 "
                                                 "parameters (test accuracy 0.9224).")
