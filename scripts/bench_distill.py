"""Benchmark: does distillation matter? The same student trained without and with KD.

  python scripts/bench_distill.py --teacher_dir=runs/teacher --output_dir=runs/bench_distill
  python scripts/bench_distill.py --teacher_dir=runs/msra_gpt --student_recipe=configs/msra_student.flags \
      --temperature=2 --alpha=0.5 --augment_copies=0 --nocache_speed --seeds=42,43,44 \
      --reuse_complete --output_dir=runs/bench_lm_kd      # a language model: bits per character

Trains the teacher from configs/banking77_teacher.flags first if --teacher_dir holds no finished
run. For each seed, the student recipe (--student_recipe) trains (a) on hard labels and (b)
distilled from the teacher with cached outputs and an augmented transfer set, for the same
epochs. Then one epoch each with a cached and an online teacher (same transfer set, no
augmentation) measures throughput (--nocache_speed skips it). Writes
<output_dir>/bench_distill.json.

The score is the teacher task's headline metric (accuracy; bits per character for a language
model, lower is better); a student of an LM or NER teacher takes the teacher's corpus, splits
and context unless its recipe sets them (as distill.py does). --reuse_complete keeps arms
whose run folder is already complete (e.g. a pipeline's student/ and distilled/ linked in as
no_kd_seed42 and kd_seed42) instead of retraining them.
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
# 8: chosen over 4 by the KD arm's mean validation accuracy over seeds 1-3, a rule written
# before either ran (README, "Distillation"; validation 92.92% vs 91.92%).
flags.DEFINE_integer("augment_copies", 8, "Augmented copies per training text (KD runs).")
flags.DEFINE_integer("cache_top_k", DistillConfig.cache_top_k, "Token-level teachers (LM, "
                     "NER): cache the k most likely classes per position and the rest as one "
                     "(0 = distill.py's default).")
flags.DEFINE_string("data_dir", DataConfig.data_dir, "tensorflow-datasets data dir.")
flags.DEFINE_bool("cache_speed", True, "Also time one epoch with a cached and an online teacher.")
flags.DEFINE_bool("reuse_complete", False, "Keep an arm whose run folder is complete instead "
                  "of retraining it (default: every arm is retrained, a rerun re-measures).")
FLAGS = flags.FLAGS


def _student(run_dir: str, seed: str, extra=()):
    from slm_tf.distill.run import student_configs
    return student_configs(FLAGS.teacher_dir, FLAGS.student_recipe,
                           [f"--output_dir={run_dir}", f"--data_dir={FLAGS.data_dir}",
                            f"--seed={seed}", "--early_stopping_patience=0",
                            "--overwrite", *extra])  # a rerun re-measures


def _reused(run_dir: str):
    """The metrics of a complete run when --reuse_complete, else None."""
    from slm_tf.train.artifacts import METRICS_FILE, is_complete
    if FLAGS.reuse_complete and is_complete(run_dir):
        logging.info("reusing the complete run %s", run_dir)
        return read_json(os.path.join(run_dir, METRICS_FILE))
    return None


def _distill(run_dir, seed, cache, augment_copies, extra=()):
    from slm_tf.distill.run import DistillExperiment, distill

    data, tok, model, tcfg = _student(run_dir, seed, extra)
    kd = DistillConfig(teacher_dir=FLAGS.teacher_dir, temperature=FLAGS.temperature,
                       alpha=FLAGS.alpha, cache_teacher=cache, cache_top_k=FLAGS.cache_top_k)
    return distill(DistillExperiment(data, tok, model, tcfg, kd,
                                     AugmentConfig(augment_copies=augment_copies)))


@friendly_errors
def main(argv):
    # TensorFlow loads here, after the flags are parsed and checked.
    from slm_tf.tasks import get_task
    from slm_tf.train.artifacts import METRICS_FILE, is_complete, run_task, warn_resumed
    from slm_tf.train.trainer import train

    del argv
    out = FLAGS.output_dir
    if not is_complete(FLAGS.teacher_dir):
        logging.info("training the teacher from %s", FLAGS.teacher_recipe)
        train(ExperimentConfig(*parse_flagfile(
            TRAIN_CLASSES, FLAGS.teacher_recipe,
            [f"--output_dir={FLAGS.teacher_dir}", f"--data_dir={FLAGS.data_dir}"])))
    teacher = read_json(os.path.join(FLAGS.teacher_dir, METRICS_FILE))
    task = get_task(run_task(FLAGS.teacher_dir))
    metric, pick = task.headline, (max if task.higher_is_better else min)
    no_kd, kd, kd_runs, arms = [], [], [], {}
    for seed in FLAGS.seeds:
        run_dir = os.path.join(out, f"no_kd_seed{seed}")
        m = _reused(run_dir) or train(ExperimentConfig(*_student(run_dir, seed)))
        no_kd.append(m[metric])
        run_dir = os.path.join(out, f"kd_seed{seed}")
        k = _reused(run_dir) or _distill(run_dir, seed, True, FLAGS.augment_copies)
        kd.append(k[metric])
        kd_runs.append(k)
        arms.update({f"no_kd_seed{seed}": m, f"kd_seed{seed}": k})
    resumed = warn_resumed(arms)
    best = pick(kd_runs, key=lambda r: r[metric])
    result = {
        "metric": metric, "higher_is_better": task.higher_is_better,
        f"teacher_{metric}": teacher[metric],
        "teacher_num_params": teacher["num_params"],
        f"no_kd_{metric}_mean": float(np.mean(no_kd)), f"no_kd_{metric}_std": float(np.std(no_kd)),
        f"kd_{metric}_mean": float(np.mean(kd)), f"kd_{metric}_std": float(np.std(kd)),
        # KD's change relative to the no-KD mean (negative = lower, better bits per character).
        "kd_relative_change": float(np.mean(kd) / np.mean(no_kd) - 1),
        # Seed by seed (the same seed draws the same batches and initial weights).
        "kd_relative_change_per_seed": [k / n - 1 for k, n in zip(kd, no_kd)],
        f"no_kd_{metric}s": no_kd, f"kd_{metric}s": kd, "seeds": FLAGS.seeds,
        "resumed_arms": resumed,
        "student_num_params": best["num_params"],
        "student_params_ratio": best["num_params"] / teacher["num_params"],
        f"best_student_{metric}": best[metric],
        "best_student_vs_teacher": best[metric] / teacher[metric],
        "settings": {"temperature": FLAGS.temperature, "alpha": FLAGS.alpha,
                     "augment_copies": FLAGS.augment_copies, "cache_top_k": FLAGS.cache_top_k,
                     "student_recipe":
                     FLAGS.student_recipe, "teacher_dir": FLAGS.teacher_dir},
    }
    speed = {}
    if FLAGS.cache_speed:
        for cached in (True, False):
            m = _distill(os.path.join(out, f"speed_{'cached' if cached else 'online'}"),
                         FLAGS.seeds[0], cached, 0, ["--epochs=1"])
            speed[cached] = m["train_examples_per_s"]
        result.update({"cached_examples_per_s": speed[True],
                       "online_examples_per_s": speed[False],
                       "cached_speedup": speed[True] / speed[False]})
    write_json(os.path.join(out, "bench_distill.json"), result)
    print_table([["teacher", f"{teacher[metric]:.4f}", "", f"{teacher['num_params']:,}"],
                 ["student, no KD", f"{np.mean(no_kd):.4f}", f"{np.std(no_kd):.4f}",
                  f"{best['num_params']:,}"],
                 ["student, KD", f"{np.mean(kd):.4f}", f"{np.std(kd):.4f}",
                  f"{best['num_params']:,}"]],
                ["model", f"test {metric} (mean)", "std", "params"])
    print(f"KD vs no KD: {100 * result['kd_relative_change']:+.2f}% {metric}")
    if speed:
        print(f"cached teacher {speed[True]:.0f} ex/s vs online {speed[False]:.0f} ex/s "
              f"({result['cached_speedup']:.1f}x)")
    print(os.path.join(out, "bench_distill.json"))


if __name__ == "__main__":
    run(main)
