"""Benchmark: train each zoo architecture on banking77 from its recipe and compare.

  python scripts/bench_train.py --output_dir=runs/bench_train [--models=cnn,transformer,bilstm,bow]

Each model trains with ``configs/banking77_<model>.flags`` into ``<output_dir>/<model>``;
``<output_dir>/bench_train.json`` holds test accuracy, macro-F1, parameters, FLOPs and
training examples/s per model, all measured in this one run.
"""
import os
import platform

import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags, logging

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.config import parse_flagfile
from slm_tf.data.config import DataConfig
from slm_tf.io_utils import write_json
from slm_tf.recipes import recipe_path
from slm_tf.models import ModelConfig
from slm_tf.tokenizers import TokenizerConfig
from slm_tf.train.config import ExperimentConfig, TrainConfig

flags.DEFINE_string("output_dir", "runs/bench_train", "Where runs and bench_train.json go.")
flags.DEFINE_list("models", ["cnn", "transformer", "bilstm", "bow"], "Architectures to train.")
flags.DEFINE_string("data_dir", DataConfig.data_dir, "tensorflow-datasets data dir.")
flags.DEFINE_list("overrides", [], "Extra --flag=value settings applied to every recipe "
                  "(e.g. epochs=1 for a smoke run).")
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    from slm_tf.train.trainer import train  # TensorFlow loads here, after the flags

    del argv
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
               "models": {}}
    for name in FLAGS.models:
        recipe = recipe_path(f"banking77_{name}")
        overrides = [f"--output_dir={os.path.join(FLAGS.output_dir, name)}",
                     f"--data_dir={FLAGS.data_dir}", "--overwrite"  # a rerun re-measures
                     ] + [f"--{o}" for o in FLAGS.overrides]
        exp = ExperimentConfig(*parse_flagfile(
            (DataConfig, TokenizerConfig, ModelConfig, TrainConfig), recipe, overrides))
        logging.info("training %s from %s", name, recipe)
        m = train(exp)
        results["models"][name] = {
            "test_accuracy": m["accuracy"], "test_macro_f1": m["macro_f1"],
            "num_params": m["num_params"], "num_non_embedding_params":
                m["num_non_embedding_params"], "flops_per_example": m["flops_per_example"],
            "train_examples_per_s": m["train_examples_per_s"], "train_seconds":
                m["train_seconds"], "epochs_run": m["epochs_run"], "recipe": recipe}
        write_json(os.path.join(FLAGS.output_dir, "bench_train.json"), results)
    print_table([[n, f"{r['test_accuracy']:.4f}", f"{r['test_macro_f1']:.4f}",
                  f"{r['num_params']:,}", f"{r['num_non_embedding_params']:,}",
                  f"{r['train_examples_per_s']:.0f}", f"{r['train_seconds']:.0f}"]
                 for n, r in results["models"].items()],
                ["model", "test acc", "macro-F1", "params", "non-emb params", "train ex/s",
                 "train s"])
    print(f"\n{os.path.join(FLAGS.output_dir, 'bench_train.json')}")


if __name__ == "__main__":
    run(main)
