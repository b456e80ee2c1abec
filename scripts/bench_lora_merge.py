"""Benchmark: a LoRA/BitFit run's merged model.keras against the model before merging.

  python scripts/bench_lora_merge.py --run_dir=runs/lora --split=test

Rebuilds the base the run started from (--init_checkpoint / --init_from), loads the run's
adapter.safetensors onto it unmerged, and compares its logits with the merged model.keras on
every text of --split: largest absolute difference, argmax agreement and both accuracies.
Writes <run_dir>/merge_parity.json. (Exported files are compared with the merged model by
scripts/benchmark.py; together they give each file's parity with the unmerged model.)
"""
import os

import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.data.config import SPLITS

RESULT_FILE = "merge_parity.json"
flags.DEFINE_string("run_dir", None, "A finished train.py run with --lora_rank or --bitfit.")
flags.DEFINE_enum("split", "test", list(SPLITS), "Which split's texts to compare on.")
flags.mark_flag_as_required("run_dir")
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    from slm_tf.io_utils import write_json
    from slm_tf.peft.unmerged import merge_parity

    result = merge_parity(FLAGS.run_dir, FLAGS.split)
    write_json(os.path.join(FLAGS.run_dir, RESULT_FILE), result)
    print_table([[result["split"], result["rows"], result["lora_layers"],
                  f"{result['max_abs_logit_diff']:.2e}", f"{result['argmax_agreement']:.4f}",
                  f"{result['accuracy_unmerged']:.4f}", f"{result['accuracy_merged']:.4f}"]],
                ["split", "rows", "LoRA layers", "max abs logit diff", "agreement",
                 "acc unmerged", "acc merged"])


if __name__ == "__main__":
    run(main)
