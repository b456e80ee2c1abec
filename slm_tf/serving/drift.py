"""Reference histograms of a model's predictions and the population stability index (PSI).

The export step stores the histograms of the test split's predictions (``reference.json``);
the server compares live traffic against them. PSI is a two-line formula; no maintained
library in our pins (scikit-learn, scipy) ships it, so it is written here.
"""
from typing import Dict, List, Sequence

import numpy as np

REFERENCE_FILE = "reference.json"
CONFIDENCE_BINS = 10  # equal-width bins of the top probability over [0, 1]
# An empty bin would make PSI infinite; a small floor is the usual convention.
EPSILON = 1e-4
WARN_PSI = 0.2  # the conventional "significant shift" threshold


def confidence_bin(confidence: float) -> int:
    """Index of the equal-width bin holding ``confidence`` (1.0 falls in the last bin)."""
    return min(CONFIDENCE_BINS - 1, max(0, int(confidence * CONFIDENCE_BINS)))


def histograms(predicted: Sequence[int], confidences: Sequence[float],
               label_names: List[str]) -> Dict:
    """Counts of predicted labels and of confidence bins, the form ``reference.json`` holds."""
    labels = np.bincount(np.asarray(predicted, np.int64), minlength=len(label_names))
    conf = np.bincount([confidence_bin(c) for c in confidences], minlength=CONFIDENCE_BINS)
    return {"examples": int(len(predicted)), "label_names": list(label_names),
            "label_counts": [int(x) for x in labels],
            "confidence_bins": CONFIDENCE_BINS, "confidence_counts": [int(x) for x in conf]}


def psi(expected_counts: Sequence[float], actual_counts: Sequence[float]) -> float:
    """Population stability index sum((a - e) * ln(a / e)) over bins of two count vectors,
    each normalised to proportions, empty bins floored at ``EPSILON``."""
    e = np.asarray(expected_counts, np.float64)
    a = np.asarray(actual_counts, np.float64)
    if e.shape != a.shape or e.sum() <= 0 or a.sum() <= 0:
        return 0.0
    e = np.maximum(e / e.sum(), EPSILON)
    a = np.maximum(a / a.sum(), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))
