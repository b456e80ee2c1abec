"""Benchmark: are the integrated-gradients explanations faithful? (issue 19's acceptance)

  python scripts/bench_explain.py --run_dir=runs/banking77_student --num_texts=200

On --num_texts evenly spaced test texts of the run's own data, deletes the 3 highest-attributed
tokens and 3 random ones and compares the drop of the predicted class's probability. Writes
<run_dir>/bench_explain.json (or --output).
"""
import os

import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, run
from slm_tf.config import from_dict
from slm_tf.data.config import DataConfig
from slm_tf.data.pipeline import prepare_data
from slm_tf.io_utils import write_json
from slm_tf.train.artifacts import load_run
from slm_tf.trust.explain import IntegratedGradients
from slm_tf.trust.faithfulness import deletion_test
from slm_tf.trust.serving import load_head

flags.DEFINE_string("run_dir", None, "A finished train/distill/compress run.")
flags.DEFINE_integer("num_texts", 200, "Test texts to explain (evenly spaced).")
flags.DEFINE_integer("k", 3, "Tokens deleted per text.")
flags.DEFINE_integer("steps", 32, "Integration steps.")
flags.DEFINE_integer("seed", 0, "Seed of the random deletions.")
flags.DEFINE_string("output", "", "JSON path (default <run_dir>/bench_explain.json).")
flags.mark_flag_as_required("run_dir")
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    run = load_run(FLAGS.run_dir)
    texts = prepare_data(from_dict(DataConfig, run.config["data"])).texts("test")
    texts = texts[::max(1, len(texts) // FLAGS.num_texts)][:FLAGS.num_texts]
    rows = run.tokenizer.encode(texts, run.max_seq_len)
    n_words = [min(len(run.tokenizer.tokenize(t)), run.max_seq_len - 2) for t in texts]
    ig = IntegratedGradients(run.model, load_head(FLAGS.run_dir).temperature, FLAGS.steps)
    result = {"run_dir": os.path.abspath(FLAGS.run_dir), "steps": FLAGS.steps,
              **deletion_test(ig, rows, n_words, FLAGS.k, FLAGS.seed)}
    out = FLAGS.output or os.path.join(FLAGS.run_dir, "bench_explain.json")
    write_json(out, result)
    print({k: v for k, v in result.items() if k != "run_dir"})
    print(f"written: {out}")


if __name__ == "__main__":
    run(main)
