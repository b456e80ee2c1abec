"""Generate text from a trained language model run, streaming tokens to the terminal.

  python scripts/generate.py --run_dir=runs/lm --prompt="To be, or not" --max_new_tokens=200
  python scripts/generate.py --run_dir=runs/lm --prompt="ROMEO:" --prompt="JULIET:" \
      --temperature=0.8 --top_k=40 --top_p=0.95 --seed=1 --stop="\n\n"

Several --prompt flags are decoded as one batch (printed when done; one prompt streams).
"""
import sys

import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, run
from slm_tf.config import define_flags, from_flags
from slm_tf.errors import UserError
from slm_tf.generation import SamplingConfig

define_flags(SamplingConfig)
flags.DEFINE_string("run_dir", None, "The --output_dir of a finished train_lm.py run.")
flags.DEFINE_multi_string("prompt", [""], "Text to continue (repeat the flag for a batch).")
flags.mark_flag_as_required("run_dir")
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    # TensorFlow loads here, after the flags were parsed and its start-up notices filtered.
    from slm_tf.generation import generate
    from slm_tf.models import is_language_model
    from slm_tf.train.artifacts import load_run, require_complete
    cfg = from_flags(SamplingConfig)
    # Flags cannot hold a real line break: "\n" and "\t" in stop strings mean them.
    cfg.stop = [s.encode("utf-8").decode("unicode_escape") for s in cfg.stop]
    require_complete(FLAGS.run_dir)
    run = load_run(FLAGS.run_dir)
    if not is_language_model(run.model):
        raise UserError(f"{FLAGS.run_dir}: the run's model is not a language model. Fix: "
                        "point --run_dir at a train_lm.py (--task=lm) run.")
    prompts = FLAGS.prompt
    def to_terminal(row, piece):
        sys.stdout.write(piece)
        sys.stdout.flush()

    stream = to_terminal if len(prompts) == 1 else None
    if stream:
        sys.stdout.write(prompts[0])
    texts = generate(run.model, run.tokenizer, prompts, cfg, on_text=stream)
    if stream:
        print()
    else:
        for prompt, text in zip(prompts, texts):
            print(f"{prompt}{text}\n---")


if __name__ == "__main__":
    run(main)
