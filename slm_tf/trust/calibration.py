"""Temperature scaling (Guo et al. 2017): one scalar T, fitted on validation, divides the logits.

T > 0 leaves the argmax (accuracy) unchanged and only reshapes the confidence.
"""
from typing import Dict

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from slm_tf.train.metrics import expected_calibration_error, reliability_bins, softmax

# T is searched as log T in this range (T from about 0.02 to 50): wide enough for any
# sensible classifier, bounded so a degenerate split cannot send T to 0 or infinity.
_LOG_T_BOUNDS = (-4.0, 4.0)
ECE_BINS = 15


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    logp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T minimizing validation NLL of ``softmax(logits / T)``.

    scikit-learn has no temperature scaling (CalibratedClassifierCV refits per class), so a
    bounded 1-D minimization from scipy does it; the NLL is convex in 1/T, so Brent's search on
    log T finds the global minimum.
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    res = minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))),
                          bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
    return float(np.exp(res.x))


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / temperature)``."""
    return softmax(np.asarray(logits, np.float64) / temperature)


def before_after_ece(labels, raw_logits, calibrated_probs, temperature: float) -> Dict:
    """ECE (15 equal-width bins) of ``softmax(raw_logits)`` and of ``calibrated_probs`` (what a
    model or exported file outputs after temperature scaling) against ``labels``."""
    labels = np.asarray(labels)
    return {"temperature": float(temperature), "bins": ECE_BINS,
            "ece_before": expected_calibration_error(
                calibrated_probabilities(raw_logits, 1.0), labels, ECE_BINS),
            "ece_after": expected_calibration_error(
                np.asarray(calibrated_probs, np.float64), labels, ECE_BINS)}


def calibration_report(val_logits, val_labels, test_logits, test_labels) -> Dict:
    """Fits T on validation; ECE, NLL and reliability bins on test before and after."""
    t = fit_temperature(val_logits, val_labels)
    before = calibrated_probabilities(test_logits, 1.0)
    after = calibrated_probabilities(test_logits, t)
    return {
        "temperature": t,
        "fitted_on": "validation",
        "ece_before": expected_calibration_error(before, test_labels),
        "ece_after": expected_calibration_error(after, test_labels),
        "nll_before": nll(test_logits, test_labels, 1.0),
        "nll_after": nll(test_logits, test_labels, t),
        "reliability_before": reliability_bins(before, test_labels),
        "reliability_after": reliability_bins(after, test_labels),
    }
