"""Calibration and abstention of one model, from its validation and test logits: the
``trust`` block of ``metrics.json`` and its two plots."""
import os
from typing import Dict, List, Optional

import numpy as np

from slm_tf.data.sources import OOS_LABEL
from slm_tf.io_utils import atomic_path
from slm_tf.trust.abstention import Target, evaluate_methods, resolve_method
from slm_tf.trust.calibration import calibration_report

RELIABILITY_PLOT = "reliability.png"
TRADEOFF_PLOT = "abstention_tradeoff.png"


def oos_index(label_names: List[str]) -> Optional[int]:
    """Index of the out-of-scope label, or None when the task has none."""
    return label_names.index(OOS_LABEL) if OOS_LABEL in label_names else None


def trust_metrics(val_logits, val_labels, test_logits, test_labels, label_names: List[str],
                  calibrate: bool, abstain_method: str, abstain_target: str) -> Dict:
    """T (1 when not calibrating), ECE before/after, every abstention method's metrics, and the
    rule exported models apply (None when the data has no out-of-scope examples)."""
    out: Dict = {"temperature": 1.0, "rule": None}
    if calibrate:
        out["calibration"] = calibration_report(val_logits, val_labels, test_logits,
                                                test_labels)
        out["temperature"] = out["calibration"]["temperature"]
    oos = oos_index(label_names)
    method = resolve_method(abstain_method, oos)
    has_oos = oos is not None and (np.asarray(val_labels) == oos).any()
    if method == "none" or not has_oos:
        out["abstention"] = {"skipped": "disabled (--abstain_method=none)" if method == "none"
                             else f"no out-of-scope label {OOS_LABEL!r} in the validation data"}
        return out
    target = Target.parse(abstain_target)
    methods = evaluate_methods(val_logits, val_labels, test_logits, test_labels,
                               out["temperature"], oos, target)
    out["abstention"] = {"target": abstain_target, "method": method, "methods": methods}
    out["rule"] = {"method": method, "threshold": methods[method]["threshold"],
                   "oos_index": oos, "abstain_when": "oos_score > threshold"}
    return out


def write_plots(trust: Dict, out_dir: str, title: str = "") -> Dict[str, str]:
    """Reliability diagram (before/after T) and the abstention trade-off curve as PNGs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = {}

    def save(fig, name):
        with atomic_path(os.path.join(out_dir, name)) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        files[name[:-4]] = name

    cal = trust.get("calibration")
    if cal:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
        for key, style in (("before", "o-"), ("after", "s-")):
            bins = cal[f"reliability_{key}"]
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], style,
                    ms=3, label=f"{key} T (ECE {cal[f'ece_{key}']:.4f})")
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title} reliability, T = {cal['temperature']:.3f}")
        ax.legend()
        save(fig, RELIABILITY_PLOT)
    methods = trust.get("abstention", {}).get("methods")
    if methods:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for name, m in methods.items():
            c = m["curve"]
            line, = ax.plot([p["oos_recall"] for p in c], [p["in_scope_accuracy"] for p in c],
                            "-", label=name)
            ax.plot([m["oos_recall"]], [m["in_scope_accuracy"]], "o", color=line.get_color())
        ax.set_xlabel("out-of-scope recall")
        ax.set_ylabel("in-scope accuracy (abstaining counts as wrong)")
        ax.set_title(f"{title} abstention trade-off (dots: validation-chosen threshold)")
        ax.legend()
        save(fig, TRADEOFF_PLOT)
    return files


def summary_lines(trust: Dict) -> List[str]:
    """Markdown lines for a report: T, ECE before/after, and what abstention costs."""
    lines = []
    cal = trust.get("calibration")
    if cal:
        lines.append(f"Temperature T = {cal['temperature']:.3f} (fitted on validation): test ECE "
                     f"{cal['ece_before']:.4f} -> {cal['ece_after']:.4f}, NLL "
                     f"{cal['nll_before']:.4f} -> {cal['nll_after']:.4f}.")
    ab = trust.get("abstention", {})
    if "methods" in ab:
        lines += ["", f"Abstention (threshold chosen on validation for {ab['target']}; exported "
                  f"rule: {ab['method']}):", "",
                  "| method | OOS recall | OOS precision | in-scope acc. | without abstention |"
                  " cost (points) | AUROC | FPR@95 |", "|---|---|---|---|---|---|---|---|"]
        for name, m in ab["methods"].items():
            lines.append(f"| {name} | {m['oos_recall']:.4f} | {m['oos_precision']:.4f} | "
                         f"{m['in_scope_accuracy']:.4f} | "
                         f"{m['in_scope_accuracy_without_abstention']:.4f} | "
                         f"{m['accuracy_cost_points']:.2f} | {m['auroc']:.4f} | "
                         f"{m['fpr_at_95_in_scope_recall']:.4f} |")
    elif ab:
        lines.append(f"Abstention: {ab['skipped']}.")
    return lines


def run_trust(val_logits, val_labels, test_logits, test_labels, label_names: List[str], tcfg,
              run_dir: str) -> Dict:
    """:func:`trust_metrics` with the run's ``calibrate``/``abstain_*`` settings (a
    TrainConfig); the plots go into ``run_dir``."""
    trust = trust_metrics(val_logits, val_labels, test_logits, test_labels, label_names,
                          tcfg.calibrate, tcfg.abstain_method, tcfg.abstain_target)
    trust["plots"] = write_plots(trust, run_dir)
    return trust
