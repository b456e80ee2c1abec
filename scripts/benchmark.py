"""Measure every exported file of a run on its test split through the real runtimes.

  python scripts/benchmark.py --export_dir=runs/student_c/export

LiteRT for .tflite, onnxruntime for .onnx, TensorFlow for the SavedModel, each in a fresh
process: accuracy, macro-F1, agreement with the Keras model, file size, peak memory, batch-1
latency p50/p95 with 1 and 2 threads. Writes benchmark.json and benchmark.md in --export_dir;
exits with status 1 when a format misses its parity floor.
"""
import sys

import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, run

flags.DEFINE_string("export_dir", None, "The --output_dir of scripts/export.py.")
flags.DEFINE_integer("latency_queries", 300, "Batch-1 queries timed per format and thread count.")
flags.DEFINE_integer("lm_prompts", 50, "Language models: held-out prompts whose greedy "
                     "continuations are compared with Keras.")
flags.DEFINE_integer("lm_new_tokens", 64, "Language models: new tokens per greedy continuation.")
flags.DEFINE_integer("lm_windows", 0, "Language models: test windows scored for bits per "
                     "character (0 = the whole test split).")
flags.mark_flag_as_required("export_dir")
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    # TensorFlow loads here, after the flags are parsed and checked.
    from slm_tf.export.benchmark import benchmark_export
    from slm_tf.export.parity import parity_failures

    records = benchmark_export(FLAGS.export_dir, FLAGS.latency_queries,
                               {"prompts": FLAGS.lm_prompts, "new_tokens": FLAGS.lm_new_tokens,
                                "max_windows": FLAGS.lm_windows})
    failures = parity_failures(records)
    for line in failures:
        print(f"parity FAILED: {line}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    run(main)
