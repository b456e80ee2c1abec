"""Per-token attributions (integrated gradients on the token embeddings) for a run's model.

  python scripts/explain.py --run_dir=runs/x --text="I lost my card, please block it"

Prints each token's attribution towards the predicted label (or --label) and writes an HTML
heat map (default <run_dir>/explain.html).
"""
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)

from slm_tf.cli import friendly_errors, run
from slm_tf.config import define_flags, from_flags
from slm_tf.trust.explain import ExplainConfig, explain_run, format_text

define_flags(ExplainConfig)


@friendly_errors
def main(argv):
    cfg = from_flags(ExplainConfig)
    print(f"\n{cfg.text}\n{format_text(explain_run(cfg))}")
    print(f"\nHTML heat map: {cfg.html or cfg.run_dir + '/explain.html'}")


if __name__ == "__main__":
    run(main)
