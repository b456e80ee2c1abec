"""From data to phone in one command: teacher -> student -> distilled -> pruned -> QAT ->
export -> benchmark -> report.

  python scripts/pipeline.py --flagfile=configs/banking77_pipeline.flags --output_dir=runs/pipe
  python scripts/pipeline.py --flagfile=configs/banking77_pipeline.flags --output_dir=runs/mine \
      --data=my.csv --text_column=text --label_column=label
  python scripts/pipeline.py --task=lm --data=my_corpus/ --output_dir=runs/lm_pipe
  python scripts/pipeline.py --flagfile=configs/shakespeare_pipeline.flags --output_dir=runs/sp

Data flags given here override both recipes. Stages whose outputs are complete are skipped and
an interrupted stage resumes from its checkpoint, so rerunning after a crash is safe. Ends with
report.md, report.html, summary.json, model_card.md and plots in --output_dir; TensorBoard:
tensorboard --logdir <output_dir>.
"""
import shlex
import sys

import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import command_line_flag_names, friendly_errors, run
from slm_tf.config import define_flags, from_flags
from slm_tf.data.config import DataConfig
from slm_tf.pipeline.config import PipelineConfig

define_flags(PipelineConfig)
define_flags(DataConfig)
FLAGS = flags.FLAGS


def _data_overrides():
    """The data flags the user set (command line or flagfile), as recipe overrides."""
    out = []
    for name in DataConfig.__dataclass_fields__:
        flag = FLAGS[name]
        if flag.present:
            value = ",".join(flag.value) if isinstance(flag.value, list) else flag.value
            out.append(f"--{name}={value}")
    return out


def _task_defaults(task):
    """--task=lm / ner: the task's recipes and settings for every pipeline flag the user left
    unset."""
    from slm_tf.pipeline.config import TASK_PIPELINE_DEFAULTS
    for name, value in TASK_PIPELINE_DEFAULTS.get(task, {}).items():
        if not FLAGS[name].present:
            FLAGS[name].value = value


@friendly_errors
def main(argv):
    # TensorFlow loads here, after the flags are parsed and checked.
    from slm_tf.pipeline.stages import Context, run_and_report

    _task_defaults(FLAGS.task)
    # No --student_recipe / --teacher_recipe (here or in a flagfile): it comes from the data.
    ctx = Context(from_flags(PipelineConfig), _data_overrides(),
                  auto_student=not FLAGS["student_recipe"].present,
                  auto_teacher=not FLAGS["teacher_recipe"].present,
                  data_on_command_line=command_line_flag_names(sys.argv, FLAGS)
                  & set(DataConfig.__dataclass_fields__),
                  pipeline_given={n for n in PipelineConfig.__dataclass_fields__
                                  if FLAGS[n].present})
    summary = run_and_report(ctx, " ".join(shlex.quote(a) for a in sys.argv))
    f = summary["final"]
    if ctx.cfg.task == "lm":
        print(f"\nfinal: {f['name']}: {f['bits_per_character']:.4f} bits per character "
              f"(teacher {f['teacher_bits_per_character']:.4f}), {f['size_bytes']:,} bytes "
              f"({f['size_vs_teacher']:.3f} of the teacher)\nreport: {ctx.cfg.output_dir}"
              f"/report.md  TensorBoard: tensorboard --logdir {ctx.cfg.output_dir}")
        return
    print(f"\nfinal: {f['name']}: {summary['metric_labels'][0]} {f['accuracy']:.4f} (teacher "
          f"{f['teacher_accuracy']:.4f}), {f['file_bytes']:,} bytes, p50 {f['p50_ms_1t']:.3f} ms"
          f"\nreport: {ctx.cfg.output_dir}/report.md  TensorBoard: tensorboard --logdir "
          f"{ctx.cfg.output_dir}")
    gap = f.get("below_earlier_stage")
    if gap:
        print(f"WARNING: the final model is {gap['points']:.2f} points below the {gap['stage']} "
              f"model (margin {gap['margin_points']:.1f}); the stage that lost most: "
              f"{gap['biggest_loss']}", file=sys.stderr)
    base = f.get("baseline_accuracy")
    if base is not None and f["accuracy"] < base:
        print(f"WARNING: the final model is {(base - f['accuracy']) * 100:.2f} points below the "
              f"TF-IDF + linear baseline ({base:.4f}); see the report.", file=sys.stderr)


if __name__ == "__main__":
    run(main)
