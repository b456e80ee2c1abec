"""Parity between an exported file and the Keras model it came from: the share of inputs on
which both pick the same class, against a per-format floor."""
from typing import Dict, List

import numpy as np

# Quantized formats may flip near-ties; float formats must match on (almost) every input.
MIN_AGREEMENT: Dict[str, float] = {
    "tflite_float": 0.999, "onnx": 0.999, "saved_model": 0.999,
    "tflite_dynamic": 0.995, "tflite_fp16": 0.995, "tflite_int8": 0.99,
}


def agreement(reference_logits: np.ndarray, logits: np.ndarray) -> float:
    """Fraction of rows whose argmax matches the reference's."""
    return float(np.mean(np.argmax(reference_logits, 1) == np.argmax(logits, 1)))


def parity_failures(records: List[Dict]) -> List[str]:
    """One line per benchmark record whose agreement is below its format's floor (or that
    carries its own ``parity_failure``, as language-model records do)."""
    return [f"{r['format']}: {r['parity_failure']}" if "parity_failure" in r else
            f"{r['format']}: agreement {r['agreement']:.4f} < {MIN_AGREEMENT[r['format']]}"
            for r in records if "parity_failure" in r or (
                "agreement" in r and r["format"] in MIN_AGREEMENT
                and r["agreement"] < MIN_AGREEMENT[r["format"]])]
