"""Benchmark: few-shot learning curves (K labelled examples per class) on banking77.

  python scripts/bench_fewshot.py --pretrain_dir=runs/pretrain --systems=scratch,pretrained \
      --shots=10 --seeds=1,2,3 --output_dir=runs/bench_fewshot

Systems: ``scratch`` (the student from random weights, --scratch_recipe), ``pretrained`` (the
same student started from --pretrain_dir, a scripts/pretrain.py run, --student_recipe),
``pretrained_kd`` (that pretrained student distilled from the --kd_teacher system's run with
the same K and seed, on the K labelled examples plus the other training texts without labels),
``teacher_lora`` (MiniLM with LoRA adapters) and ``teacher_full`` (MiniLM fine-tuned in full).
Each (system, K, seed) is a normal run under --output_dir (a finished one is read back, not
retrained, so the benchmark can be extended K by K; --notrain draws what has finished); K=0
means all training examples. Writes bench_fewshot.json (test accuracy per seed, mean and std)
and bench_fewshot.png (accuracy against K).
"""
import os

import numpy as np
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags, logging

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.config import parse_flagfile
from slm_tf.data.config import DataConfig
from slm_tf.distill.config import KD_ALPHA, KD_TEMPERATURE, AugmentConfig, DistillConfig
from slm_tf.io_utils import atomic_path, read_json, write_json
from slm_tf.models.config import ModelConfig
from slm_tf.peft.config import FineTuneConfig
from slm_tf.pipeline.config import CONFIGS
from slm_tf.tokenizers.config import TokenizerConfig
from slm_tf.train.config import ExperimentConfig, TrainConfig
from slm_tf.trust.config import DPConfig

CLASSES = (DataConfig, TokenizerConfig, ModelConfig, TrainConfig, DPConfig, FineTuneConfig)
LORA = ["--lora_rank=8", "--lora_alpha=16",
        "--lora_targets=query,value,attention_output,ffn_in,ffn_out", "--learning_rate=1e-3"]
# System -> (recipe flag holding its flagfile, extra flags, distilled from --kd_teacher).
SYSTEMS = {"scratch": ("scratch_recipe", [], False),
           "pretrained": ("student_recipe", ["init_from"], False),
           "pretrained_kd": ("student_recipe", ["init_from"], True),
           "teacher_lora": ("teacher_recipe", LORA, False),
           "teacher_full": ("teacher_recipe", [], False)}
TEACHERS = ("teacher_lora", "teacher_full")
flags.DEFINE_string("output_dir", "runs/bench_fewshot", "Where runs and the results go.")
flags.DEFINE_string("pretrain_dir", "", "A scripts/pretrain.py run (the pretrained system).")
flags.DEFINE_list("systems", ["scratch", "pretrained"], f"From {', '.join(SYSTEMS)}.")
flags.DEFINE_list("shots", ["5", "10", "20", "50", "0"], "K per class (0 = all).")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds of the subsets and the training.")
flags.DEFINE_string("student_recipe", os.path.join(CONFIGS, "banking77_fewshot_student.flags"),
                    "Recipe of the pretrained student (pretrained, pretrained_kd).")
flags.DEFINE_string("scratch_recipe", os.path.join(CONFIGS, "banking77_fewshot_scratch.flags"),
                    "Recipe of the same student from random weights (scratch); the same "
                    "architecture, regularized as its own validation chose.")
flags.DEFINE_string("teacher_recipe", os.path.join(CONFIGS, "banking77_teacher.flags"),
                    "Teacher recipe (teacher_lora, teacher_full).")
flags.DEFINE_string("data_dir", DataConfig.data_dir, "tensorflow-datasets data dir.")
flags.DEFINE_enum("kd_teacher", "teacher_full", TEACHERS,
                  "The system whose run (same K and seed) teaches pretrained_kd (teacher_full: "
                  "the higher validation accuracy at K = 10, README).")
flags.DEFINE_float("temperature", KD_TEMPERATURE, "pretrained_kd: KD temperature.")
flags.DEFINE_float("alpha", KD_ALPHA, "pretrained_kd: weight of the hard-label term.")
flags.DEFINE_bool("train", True, "Train the runs not finished yet; --notrain reports and plots "
                  "the finished ones only (a partial curve), listing the others.")
FLAGS = flags.FLAGS


def _student_split() -> list:
    """The student recipe's validation carving, for every system: the recipes differ (the
    teacher's holds out 5%), and with one training split every system's K examples per class
    are the same texts, so a distilled student's labelled texts are its teacher's."""
    data = parse_flagfile(CLASSES, FLAGS.student_recipe, ["--output_dir=unused"])[0]
    return [f"--validation_fraction={data.validation_fraction}", f"--split_seed={data.split_seed}"]


def _run_dir(system: str, k: int, seed: str) -> str:
    return os.path.join(FLAGS.output_dir, f"{system}_k{k}_seed{seed}")


def _run(system: str, k: int, seed: str) -> dict:
    """Test metrics of one (system, K, seed) run, training it unless already finished."""
    from slm_tf.distill.run import DistillExperiment, distill
    from slm_tf.train.artifacts import METRICS_FILE, is_complete
    from slm_tf.train.trainer import train
    run_dir = _run_dir(system, k, seed)
    if not is_complete(run_dir):
        recipe, extra, distilled = SYSTEMS[system]
        extra = [f"--init_from={FLAGS.pretrain_dir}" if e == "init_from" else e for e in extra]
        overrides = [f"--output_dir={run_dir}", f"--data_dir={FLAGS.data_dir}", f"--seed={seed}",
                     f"--train_examples_per_class={k}", *_student_split(), *extra]
        if distilled:
            teacher_dir = _run_dir(FLAGS.kd_teacher, k, seed)
            _run(FLAGS.kd_teacher, k, seed)
            logging.info("distilling %s from %s", run_dir, teacher_dir)
            data, tok, model, tcfg, augment, finetune = parse_flagfile(
                (DataConfig, TokenizerConfig, ModelConfig, TrainConfig, AugmentConfig,
                 FineTuneConfig), getattr(FLAGS, recipe), overrides)
            kd = DistillConfig(teacher_dir=teacher_dir, temperature=FLAGS.temperature,
                               alpha=FLAGS.alpha)
            distill(DistillExperiment(data, tok, model, tcfg, kd, augment, finetune))
        else:
            logging.info("training %s", run_dir)
            train(ExperimentConfig(*parse_flagfile(CLASSES, getattr(FLAGS, recipe), overrides)))
    return read_json(os.path.join(run_dir, METRICS_FILE))


def _plot(results: dict, path: str) -> None:
    from slm_tf.plotting import pyplot
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for system, by_k in results.items():
        ks = sorted(by_k, key=lambda k: int(k) or 10 ** 6)
        x = [int(k) or max(int(j) for j in ks) * 4 for k in ks]  # "all" drawn to the right
        y = [100 * by_k[k]["mean"] for k in ks]
        e = [100 * by_k[k]["std"] for k in ks]
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=system)
    ax.set_xscale("log")
    ax.set_xlabel("labelled examples per class (rightmost: all)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


@friendly_errors
def main(argv):
    del argv
    unknown = [s for s in FLAGS.systems if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"--systems: unknown {unknown}; choose from {list(SYSTEMS)}")
    pretrained = [s for s in FLAGS.systems if "init_from" in SYSTEMS[s][1]]
    if pretrained and not FLAGS.pretrain_dir:
        raise SystemExit(f"--systems={','.join(pretrained)} needs --pretrain_dir=<a "
                         "scripts/pretrain.py run>")
    from slm_tf.train.artifacts import is_complete, warn_resumed
    results, rows, missing, runs = {}, [], [], {}
    for system in FLAGS.systems:
        for k in (int(s) for s in FLAGS.shots):
            seeds = FLAGS.seeds
            if not FLAGS.train:
                seeds = [s for s in seeds if is_complete(_run_dir(system, k, s))]
                missing += [_run_dir(system, k, s) for s in FLAGS.seeds if s not in seeds]
                if not seeds:
                    continue
            metrics = {seed: _run(system, k, seed) for seed in seeds}
            runs.update({os.path.basename(_run_dir(system, k, s)): m for s, m in metrics.items()})
            accs = [m["accuracy"] for m in metrics.values()]
            results.setdefault(system, {})[str(k)] = {
                "accuracies": accs, "seeds": seeds, "mean": float(np.mean(accs)),
                "std": float(np.std(accs))}
            rows.append([system, k or "all", f"{np.mean(accs):.4f}", f"{np.std(accs):.4f}",
                         len(accs)])
    if missing:
        logging.warning("--notrain: %d runs not finished, left out: %s", len(missing), missing)
    out = {"results": results, "seeds": FLAGS.seeds, "pretrain_dir": FLAGS.pretrain_dir,
           "missing_runs": missing, "resumed_runs": warn_resumed(runs),
           "student_recipe": FLAGS.student_recipe, "scratch_recipe": FLAGS.scratch_recipe,
           "teacher_recipe": FLAGS.teacher_recipe,
           "kd": {"teacher": FLAGS.kd_teacher, "temperature": FLAGS.temperature,
                  "alpha": FLAGS.alpha}}
    write_json(os.path.join(FLAGS.output_dir, "bench_fewshot.json"), out)
    _plot(results, os.path.join(FLAGS.output_dir, "bench_fewshot.png"))
    print_table(rows, ["system", "K per class", "test acc (mean)", "std", "seeds"])
    print(os.path.join(FLAGS.output_dir, "bench_fewshot.json"))


if __name__ == "__main__":
    run(main)
