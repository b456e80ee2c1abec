"""Classification metrics computed from predictions (pure numpy, no framework state)."""
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf


def predict_logits(model, dataset: tf.data.Dataset):
    """``(logits [N, C], labels [N])`` of a batched ``(ids, label)`` dataset."""
    logits, labels = [], []
    for ids, y in dataset:
        logits.append(model(ids, training=False).numpy())
        labels.append(y.numpy())
    return np.concatenate(logits), np.concatenate(labels)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> List[Dict]:
    """Equal-width confidence bins: count, mean confidence and accuracy of each non-empty bin
    (the points of a reliability diagram)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            out.append({"lo": float(lo), "hi": float(hi), "count": int(sel.sum()),
                        "confidence": float(conf[sel].mean()),
                        "accuracy": float(correct[sel].mean())})
    return out


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins."""
    n = len(y_true)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
                     for b in reliability_bins(probs, y_true, bins)))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_report(y_true: Sequence[int], logits: np.ndarray,
                          label_names: List[str]) -> Dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix, ECE."""
    y_true = np.asarray(y_true)
    y_pred = logits.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, len(label_names))
    tp = np.diag(cm).astype(float)
    pred_n = cm.sum(axis=0).astype(float)
    true_n = cm.sum(axis=1).astype(float)
    precision = np.divide(tp, pred_n, out=np.zeros_like(tp), where=pred_n > 0)
    recall = np.divide(tp, true_n, out=np.zeros_like(tp), where=true_n > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = true_n > 0  # macro averages over classes that occur in this split
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                        "f1": float(f1[i]), "support": int(true_n[i])}
                 for i, name in enumerate(label_names)}
    return {
        "accuracy": float((y_pred == y_true).mean()),
        "macro_f1": float(f1[present].mean()),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "num_examples": int(len(y_true)),
        "ece": expected_calibration_error(softmax(logits), y_true),
        "reliability": reliability_bins(softmax(logits), y_true),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }
