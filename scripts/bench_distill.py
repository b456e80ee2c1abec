"""Benchmark: does distillation matter? The same student trained without and with KD.

  python scripts/bench_distill.py --teacher_dir=runs/teacher --output_dir=runs/bench_distill

Trains the teacher from configs/banking77_teacher.flags first if --teacher_dir holds no finished
run. For each seed, the student recipe (--student_recipe) trains (a) on hard labels and (b)
distilled from the teacher with cached outputs and an augmented transfer set, for the same
epochs. Then one epoch each with a cached and an online teacher (same transfer set, no
augmentation) measures throughput. Writes <output_dir>/bench_distill.json.
"""
import os

import numpy as np
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags, logging

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.config import parse_flagfile
from slm_tf.data.config import DataConfig
from slm_tf.distill.config import AugmentConfig, DistillConfig
from slm_tf.io_utils import read_json, write_json
from slm_tf.models import ModelConfig
from slm_tf.pipeline.config import CONFIGS
from slm_tf.tokenizers import TokenizerConfig
from slm_tf.train.config import ExperimentConfig, TrainConfig

TRAIN_CLASSES = (DataConfig, TokenizerConfig, ModelConfig, TrainConfig)
flags.DEFINE_string("output_dir", "runs/bench_distill", "Where runs and bench_distill.json go.")
flags.DEFINE_string("teacher_dir", "runs/teacher", "The teacher run (trained if missing).")
flags.DEFINE_string("teacher_recipe", os.path.join(CONFIGS, "banking77_teacher.flags"),
                    "Recipe used when the teacher has to be trained.")
flags.DEFINE_string("student_recipe", os.path.join(CONFIGS, "banking77_student.flags"),
                    "Student recipe (data, tokenizer, model, train flags).")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds; each trains both students.")
flags.DEFINE_float("temperature", 4.0, "KD temperature.")
flags.DEFINE_float("alpha", 0.3, "Weight of the hard-label term in KD.")
flags.DEFINE_integer("augment_copies", 4, "Augmented copies per training text (KD runs).")
flags.DEFINE_string("data_dir", DataConfig.data_dir, "tensorflow-datasets data dir.")
FLAGS = flags.FLAGS


def _student(run_dir: str, seed: str, extra=()):
    return parse_flagfile(TRAIN_CLASSES, FLAGS.student_recipe,
                          [f"--output_dir={run_dir}", f"--data_dir={FLAGS.data_dir}",
                           f"--seed={seed}", "--early_stopping_patience=0",
                           "--overwrite", *extra])  # a rerun re-measures


def _distill(run_dir, seed, cache, augment_copies, extra=()):
    from slm_tf.distill.run import DistillExperiment, distill

    data, tok, model, tcfg = _student(run_dir, seed, extra)
    kd = DistillConfig(teacher_dir=FLAGS.teacher_dir, temperature=FLAGS.temperature,
                       alpha=FLAGS.alpha, cache_teacher=cache)
    return distill(DistillExperiment(data, tok, model, tcfg, kd,
                                     AugmentConfig(augment_copies=augment_copies)))


@friendly_errors
def main(argv):
    # TensorFlow loads here, after the flags are parsed and checked.
    from slm_tf.train.artifacts import METRICS_FILE, is_complete
    from slm_tf.train.trainer import train

    del argv
    out = FLAGS.output_dir
    if not is_complete(FLAGS.teacher_dir):
        logging.info("training the teacher from %s", FLAGS.teacher_recipe)
        train(ExperimentConfig(*parse_flagfile(
            TRAIN_CLASSES, FLAGS.teacher_recipe,
            [f"--output_dir={FLAGS.teacher_dir}", f"--data_dir={FLAGS.data_dir}"])))
    teacher = read_json(os.path.join(FLAGS.teacher_dir, METRICS_FILE))
    no_kd, kd, kd_runs = [], [], []
    for seed in FLAGS.seeds:
        m = train(ExperimentConfig(*_student(os.path.join(out, f"no_kd_seed{seed}"), seed)))
        no_kd.append(m["accuracy"])
        k = _distill(os.path.join(out, f"kd_seed{seed}"), seed, True, FLAGS.augment_copies)
        kd.append(k["accuracy"])
        kd_runs.append(k)
    speed = {}
    for cached in (True, False):
        m = _distill(os.path.join(out, f"speed_{'cached' if cached else 'online'}"),
                     FLAGS.seeds[0], cached, 0, ["--epochs=1"])
        speed[cached] = m["train_examples_per_s"]
    best = max(kd_runs, key=lambda r: r["accuracy"])
    result = {
        "teacher_accuracy": teacher["accuracy"],
        "teacher_num_params": teacher["num_params"],
        "no_kd_accuracy_mean": float(np.mean(no_kd)), "no_kd_accuracy_std": float(np.std(no_kd)),
        "kd_accuracy_mean": float(np.mean(kd)), "kd_accuracy_std": float(np.std(kd)),
        "no_kd_accuracies": no_kd, "kd_accuracies": kd, "seeds": FLAGS.seeds,
        "student_num_params": best["num_params"],
        "best_student_accuracy": best["accuracy"],
        "best_student_vs_teacher": best["accuracy"] / teacher["accuracy"],
        "cached_examples_per_s": speed[True], "online_examples_per_s": speed[False],
        "cached_speedup": speed[True] / speed[False],
        "settings": {"temperature": FLAGS.temperature, "alpha": FLAGS.alpha,
                     "augment_copies": FLAGS.augment_copies, "student_recipe":
                     FLAGS.student_recipe, "teacher_dir": FLAGS.teacher_dir},
    }
    write_json(os.path.join(out, "bench_distill.json"), result)
    print_table([["teacher", f"{result['teacher_accuracy']:.4f}", "", f"{teacher['num_params']:,}"],
                 ["student, no KD", f"{result['no_kd_accuracy_mean']:.4f}",
                  f"{result['no_kd_accuracy_std']:.4f}", f"{best['num_params']:,}"],
                 ["student, KD", f"{result['kd_accuracy_mean']:.4f}",
                  f"{result['kd_accuracy_std']:.4f}", f"{best['num_params']:,}"]],
                ["model", "test acc (mean)", "std", "params"])
    print(f"cached teacher {speed[True]:.0f} ex/s vs online {speed[False]:.0f} ex/s "
          f"({result['cached_speedup']:.1f}x)\n{os.path.join(out, 'bench_distill.json')}")


if __name__ == "__main__":
    run(main)
