"""Re-choose a finished classifier run's abstention rule without retraining.

  python scripts/abstain.py --run_dir=runs/clinc/qat --abstain_method=oos_margin \
      --abstain_target=oos_recall:0.85

Scores the run's validation and test splits, picks the method's threshold on validation for the
target, prints every method's test metrics and rewrites the run's ``metrics.json`` trust block
(plots included); export the run again (scripts/export.py) to put the new rule in its files.
"""
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.config import define_flags, from_flags
from slm_tf.trust.config import AbstainConfig

define_flags(AbstainConfig)


@friendly_errors
def main(argv):
    from slm_tf.trust.refit import refit_abstention  # TensorFlow loads here, after the flags
    cfg = from_flags(AbstainConfig)
    trust = refit_abstention(cfg.run_dir, cfg.abstain_method, cfg.abstain_target)
    ab = trust["abstention"]
    if "methods" not in ab:
        print(f"no abstention rule: {ab['skipped']}")
        return
    print_table([[name + (" (exported)" if name == ab["method"] else ""), f"{m['threshold']:.4f}",
                  f"{m['oos_recall']:.4f}", f"{m['in_scope_accuracy']:.4f}",
                  f"{m['in_scope_accuracy_without_abstention']:.4f}",
                  f"{m['accuracy_cost_points']:.2f}", f"{m['auroc']:.4f}",
                  f"{m['fpr_at_95_in_scope_recall']:.4f}"] for name, m in ab["methods"].items()],
                ["method", "threshold", "OOS recall", "in-scope acc.", "without abstention",
                 "cost (points)", "AUROC", "FPR@95"])


if __name__ == "__main__":
    run(main)
