"""Train a text classifier from the model zoo on a registered dataset or your own file.

  python scripts/train.py --data=my.csv --text_column=text --label_column=label \
      --model=cnn --tokenizer=wordpiece --output_dir=runs/x
  python scripts/train.py --flagfile=configs/quickstart_teacher.flags --output_dir=runs/quickstart

Rerunning the same command after a crash resumes from the last checkpoint.
"""
import sys

import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import command_line_flag_names, friendly_errors, print_table, run
from slm_tf.config import define_flags, from_flags
from slm_tf.data.config import DataConfig
from slm_tf.models.config import ModelConfig
from slm_tf.peft.config import FineTuneConfig
from slm_tf.tokenizers.config import TokenizerConfig
from slm_tf.train.config import ExperimentConfig, TrainConfig
from slm_tf.trust.config import DPConfig

for _cfg in (DataConfig, TokenizerConfig, ModelConfig, TrainConfig, DPConfig, FineTuneConfig):
    define_flags(_cfg)
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    # TensorFlow loads here, after the flags are parsed and checked.
    from slm_tf.autorecipe import train_with_auto_recipe
    from slm_tf.tasks import get_task

    exp = ExperimentConfig(from_flags(DataConfig), from_flags(TokenizerConfig),
                           from_flags(ModelConfig), from_flags(TrainConfig), from_flags(DPConfig),
                           from_flags(FineTuneConfig))
    inherited = set()
    if exp.finetune.init_from:  # the pretrained run fixes the architecture and tokenizer
        from slm_tf.peft.finetune import inherit_config
        inherited = set(inherit_config(exp, {n for n in FLAGS if FLAGS[n].present})) | {"tokenizer", "vocab_size", "model"}
    given = {name for name in FLAGS if FLAGS[name].present} | inherited
    on_command_line = command_line_flag_names(sys.argv, FLAGS) | inherited
    if exp.model.init_checkpoint:  # the checkpoint owns the tokenizer and vocabulary
        on_command_line |= {"tokenizer", "vocab_size"}
    m, _ = train_with_auto_recipe(exp, given, on_command_line)
    print()
    if m["task"] == "lm":
        from slm_tf.tasks.lm import print_lm_summary
        print_lm_summary(m, exp)
        return
    task = get_task(exp.train.task)  # columns from the task's own summary metrics
    print_table([[m["data"]["name"], exp.model.model,
                  *[f"{m[k]:.4f}" for k in task.summary_metrics], f"{m['num_params']:,}",
                  f"{m['train_examples_per_s']:.0f}", m["data"]["skipped_rows_total"]]],
                ["data", "model", *[f"test {k}" for k in task.summary_metrics], "params",
                 "train ex/s", "skipped rows"])
    print(f"\nartifacts: {exp.train.output_dir} (model.keras, saved_model/, tokenizer/, "
          f"metrics.json); TensorBoard: tensorboard --logdir {exp.train.output_dir}/logs")


if __name__ == "__main__":
    run(main)
