"""Abstaining on out-of-scope input: an out-of-scope score per example, a threshold chosen on
validation for a target the user states, and the metrics of the resulting rule.

Every method maps logits to a score where higher means "more likely out of scope"; the rule is
``abstain = score > threshold``. The same formulas run in numpy (evaluation) and in TensorFlow
(:mod:`slm_tf.trust.serving`, inside exported graphs).
"""
import dataclasses
from typing import Callable, Dict, List, Optional

import numpy as np
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score, roc_curve

from slm_tf.errors import UserError
from slm_tf.registry import Registry
from slm_tf.train.metrics import softmax
from slm_tf.trust.targets import UPPER_BOUND_TARGETS, Target

# A method: (logits [N, C], temperature, oos_index or None) -> score [N].
METHODS: Registry[Callable] = Registry("abstention method")
CURVE_POINTS = 41
NEEDS_OOS_CLASS = ("oos_class", "oos_margin")  # methods that read the out-of-scope logit


def _in_scope(num_classes: int, oos_index: Optional[int]) -> np.ndarray:
    keep = np.ones(num_classes, bool)
    if oos_index is not None:
        keep[oos_index] = False
    return keep


@METHODS.register("max_prob")
def max_prob_score(logits, temperature: float, oos_index: Optional[int]) -> np.ndarray:
    """1 - the largest calibrated in-scope probability (Hendrycks & Gimpel 2017)."""
    probs = softmax(np.asarray(logits, np.float64) / temperature)
    return 1.0 - probs[:, _in_scope(probs.shape[1], oos_index)].max(axis=1)


@METHODS.register("energy")
def energy_score(logits, temperature: float, oos_index: Optional[int]) -> np.ndarray:
    """Energy ``-T * logsumexp(logits / T)`` over the in-scope classes (Liu et al. 2020)."""
    z = np.asarray(logits, np.float64)
    return -temperature * logsumexp(z[:, _in_scope(z.shape[1], oos_index)] / temperature,
                                    axis=1)


@METHODS.register("oos_class")
def oos_class_score(logits, temperature: float, oos_index: Optional[int]) -> np.ndarray:
    """The calibrated probability of the out-of-scope class (needs OOS training examples)."""
    if oos_index is None:
        raise UserError("--abstain_method=oos_class needs an out-of-scope class in the training "
                        "labels (e.g. --data=clinc150_oos, label 'oos'). Fix: use max_prob or "
                        "energy, or add out-of-scope training examples.")
    return softmax(np.asarray(logits, np.float64) / temperature)[:, oos_index]


@METHODS.register("oos_margin")
def oos_margin_score(logits, temperature: float, oos_index: Optional[int]) -> np.ndarray:
    """``log p(oos) - log max in-scope p``: the out-of-scope logit minus the best in-scope one,
    over T. Unlike ``oos_class`` it also rises when the in-scope winner is weak, and unlike
    ``max_prob`` it uses the out-of-scope class the model learned (needs OOS training data)."""
    if oos_index is None:
        raise UserError("--abstain_method=oos_margin needs an out-of-scope class in the training "
                        "labels (e.g. --data=clinc150_oos, label 'oos'). Fix: use max_prob or "
                        "energy, or add out-of-scope training examples.")
    z = np.asarray(logits, np.float64) / temperature
    return z[:, oos_index] - z[:, _in_scope(z.shape[1], oos_index)].max(axis=1)


def _rates(scores: np.ndarray, is_oos: np.ndarray, thresholds: np.ndarray,
           correct: Optional[np.ndarray] = None) -> Dict:
    """For each threshold (abstain when score > t): OOS recall, in-scope precision and, given
    which examples the model answers right, the in-scope accuracy lost to abstaining."""
    oos = np.sort(scores[is_oos])
    ins = np.sort(scores[~is_oos])
    oos_abstained = len(oos) - np.searchsorted(oos, thresholds, side="right")
    ins_answered = np.searchsorted(ins, thresholds, side="right")
    oos_answered = len(oos) - oos_abstained
    answered = ins_answered + oos_answered
    precision = np.divide(ins_answered, answered, out=np.ones(len(thresholds)),
                          where=answered > 0)
    out = {"oos_recall": oos_abstained / max(1, len(oos)), "in_scope_precision": precision}
    if correct is not None:
        right = np.sort(scores[~is_oos & np.asarray(correct, bool)])
        lost = len(right) - np.searchsorted(right, thresholds, side="right")
        out["in_scope_cost"] = lost / max(1, len(ins))
    return out


def choose_threshold(scores, is_oos, target: Target, correct=None) -> float:
    """The largest threshold (fewest abstentions) whose validation ``target.metric`` reaches
    ``target.value``; for ``in_scope_cost`` (an upper bound, needs ``correct``: the examples
    the model answers right) the smallest one (most abstentions) within it. With
    ``target.cap`` the threshold is never below the cap's (the cost bound wins). Candidates are
    the observed scores, plus one below all of them (abstain on everything) so some candidate
    always qualifies for recall."""
    if target.cap is not None:
        return max(choose_threshold(scores, is_oos, dataclasses.replace(target, cap=None),
                                    correct),
                   choose_threshold(scores, is_oos, target.cap, correct))
    scores = np.asarray(scores, np.float64)
    is_oos = np.asarray(is_oos, bool)
    if not is_oos.any() or is_oos.all():
        raise UserError("choosing an abstention threshold needs both in-scope and out-of-scope "
                        "validation examples. Fix: use data with out-of-scope examples (e.g. "
                        "--data=clinc150_oos) or --abstain_method=none.")
    if target.metric in UPPER_BOUND_TARGETS and correct is None:
        raise ValueError(f"{target.metric} needs which validation examples are answered right")
    candidates = np.unique(np.concatenate([scores, [scores.min() - 1.0]]))
    rate = _rates(scores, is_oos, candidates, correct)[target.metric]
    if target.metric in UPPER_BOUND_TARGETS:
        # Never empty: the largest candidate abstains on nothing and costs 0.
        return float(candidates[rate <= target.value + 1e-12].min())
    ok = rate >= target.value - 1e-12
    return float(candidates[ok].max()) if ok.any() else float(candidates.min())


def abstention_metrics(scores, labels, is_oos, predicted, threshold: float,
                       abstain=None) -> Dict:
    """Test metrics of ``abstain = score > threshold``.

    ``predicted`` is the in-scope class the model would answer; in-scope accuracy counts an
    abstention on an in-scope example as wrong, and is given beside the no-abstention accuracy.
    ``abstain`` (optional) gives the decisions to count instead, e.g. an exported file's own
    in-graph flag; AUROC and FPR@95 always rank ``scores``.
    """
    scores, labels, predicted = (np.asarray(a) for a in (scores, labels, predicted))
    is_oos = np.asarray(is_oos, bool)
    abstain = scores > threshold if abstain is None else np.asarray(abstain, bool)
    ins = ~is_oos
    correct = (predicted == labels) & ins
    acc_plain = float(correct[ins].mean())
    acc = float((correct & ~abstain)[ins].mean())
    # FPR at 95% in-scope recall: in-scope is the positive class, ranked by -score.
    fpr, tpr, _ = roc_curve(ins.astype(int), -scores)
    return {
        "threshold": float(threshold),
        "in_scope_accuracy": acc,
        "in_scope_accuracy_without_abstention": acc_plain,
        "accuracy_cost_points": 100.0 * (acc_plain - acc),
        "in_scope_abstained": float(abstain[ins].mean()),
        "oos_recall": float(abstain[is_oos].mean()),
        "oos_precision": float(is_oos[abstain].mean()) if abstain.any() else 0.0,
        "auroc": float(roc_auc_score(is_oos.astype(int), scores)),
        "fpr_at_95_in_scope_recall": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
        "num_in_scope": int(ins.sum()),
        "num_oos": int(is_oos.sum()),
    }


def tradeoff_curve(scores, labels, is_oos, predicted, points: int = CURVE_POINTS) -> List[Dict]:
    """(threshold, OOS recall, in-scope accuracy) at score quantiles: the trade-off curve."""
    scores = np.asarray(scores, np.float64)
    is_oos = np.asarray(is_oos, bool)
    ok = (np.asarray(predicted) == np.asarray(labels)) & ~is_oos
    out = []
    for t in np.unique(np.quantile(scores, np.linspace(0.0, 1.0, points))):
        abstain = scores > t
        out.append({"threshold": float(t), "oos_recall": float(abstain[is_oos].mean()),
                    "in_scope_accuracy": float((ok & ~abstain)[~is_oos].mean())})
    return out


def in_scope_prediction(logits, oos_index: Optional[int]) -> np.ndarray:
    """The best in-scope class per row (what the model answers when it does not abstain)."""
    keep = _in_scope(np.shape(logits)[1], oos_index)
    return np.flatnonzero(keep)[np.asarray(logits)[:, keep].argmax(axis=1)]


def resolve_method(method: str, oos_index: Optional[int]) -> str:
    """``auto`` -> ``oos_class`` when the labels have an out-of-scope class, else ``max_prob``."""
    if method == "auto":
        return "oos_class" if oos_index is not None else "max_prob"
    return method


def evaluate_methods(val_logits, val_labels, test_logits, test_labels, temperature: float,
                     oos_index: Optional[int], target: Target, methods=None) -> Dict[str, Dict]:
    """Per method: the validation-chosen threshold, its test metrics and the trade-off curve.

    Examples whose label is ``oos_index`` are the out-of-scope ones; the model's answer is its
    best in-scope class.
    """
    out = {}
    predicted = in_scope_prediction(test_logits, oos_index)
    val_correct = in_scope_prediction(val_logits, oos_index) == np.asarray(val_labels)
    val_oos = np.asarray(val_labels) == oos_index
    test_oos = np.asarray(test_labels) == oos_index
    for name in methods or METHODS.names():
        if name in NEEDS_OOS_CLASS and oos_index is None:
            continue
        score = METHODS.get(name)
        t = choose_threshold(score(val_logits, temperature, oos_index), val_oos, target,
                             val_correct)
        test_scores = score(test_logits, temperature, oos_index)
        out[name] = {**abstention_metrics(test_scores, test_labels, test_oos, predicted, t),
                     "curve": tradeoff_curve(test_scores, test_labels, test_oos, predicted)}
    return out
