"""Which student the compression stages (pruning, QAT) start from, ``--compress_from``: the
distilled one, unless distillation did not pay on validation. TensorFlow-free (the flag's
choices are read before TensorFlow loads)."""
from typing import Dict, Tuple

RULES = ("better", "distilled")


def compress_source(student_metrics: Dict, distilled_metrics: Dict, rule: str,
                    task: str) -> Tuple[str, str]:
    """``(stage, reason)`` from the two runs' ``metrics.json``: ``distilled``, or ``student``
    when ``rule`` is ``better`` and the labels-only student is at least as accurate on
    validation. A tie keeps the student: distillation showed no gain, and the test split must
    not break ties. Only classifiers are compared (other tasks' headline is not accuracy);
    they keep the distilled student."""
    if rule == "distilled":
        return "distilled", "--compress_from=distilled"
    if task != "classification":
        return "distilled", f"--task={task}: the distilled student"
    student, distilled = (m.get("validation", {}).get("accuracy")
                          for m in (student_metrics, distilled_metrics))
    if student is None or distilled is None:
        return "distilled", "no validation accuracy to compare"
    if student >= distilled:
        return "student", (f"validation accuracy {student:.4f}, the distilled student's "
                           f"{distilled:.4f}: distillation did not pay")
    return "distilled", (f"validation accuracy {distilled:.4f}, the labels-only student's "
                         f"{student:.4f}")
