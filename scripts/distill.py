"""Distil a fine-tuned teacher run into a small zoo student.

  python scripts/distill.py --teacher_dir=runs/teacher --model=cnn --temperature=4 --alpha=0.5 \
      --data=banking77 --output_dir=runs/student
  (--student is an alias of --model)
  python scripts/distill.py --teacher_dir=runs/shakespeare --model=gpt --hidden_dim=96 \
      --num_layers=2 --ff_dim=256 --output_dir=runs/lm_student

The task comes from the teacher's config.json. A language-model teacher is distilled token by
token (KL between the temperature-scaled next-token distributions at every position, plus the
hard next-token loss); its student keeps the teacher's tokenizer, corpus, splits and context
unless flags say otherwise. A named-entity (--task=ner) teacher is distilled per tagged
position the same way, into a student with the teacher's tokenizer, data and sequence length.

The teacher's outputs are computed once and cached under --data_dir (--nocache_teacher runs it
online). --augment_copies=N and --unlabeled_data=domain.txt grow the transfer set. --init_from=<run>
starts the student from a pretrained run (scripts/pretrain.py; its architecture and tokenizer
are carried over); --train_examples_per_class=K keeps K labelled examples per class and puts
the other training texts in the transfer set without their labels (few-shot distillation).
The output directory is a normal run: evaluate.py and export work on the student unchanged.
"""
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.config import define_flags, from_flags
from slm_tf.data.config import DataConfig
from slm_tf.distill.config import AugmentConfig, DistillConfig
from slm_tf.models.config import ModelConfig
from slm_tf.peft.config import FineTuneConfig
from slm_tf.tokenizers.config import TokenizerConfig
from slm_tf.train.config import TrainConfig

CONFIGS = (DataConfig, TokenizerConfig, ModelConfig, TrainConfig, DistillConfig, AugmentConfig,
           FineTuneConfig)
for _cfg in CONFIGS:
    define_flags(_cfg)
flags.DEFINE_alias("student", "model")
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    # TensorFlow loads here, after the flags are parsed and checked.
    from slm_tf.distill.run import DistillExperiment, distill

    from slm_tf.distill.run import inherited_flags
    from slm_tf.train.artifacts import is_complete

    if is_complete(FLAGS.teacher_dir):
        for name, value in inherited_flags(FLAGS.teacher_dir).items():
            if name in FLAGS and not FLAGS[name].present:
                FLAGS[name].value = value
    exp = DistillExperiment(*(from_flags(c) for c in CONFIGS))
    if exp.finetune.init_from:  # the pretrained student fixes its architecture and tokenizer
        from slm_tf.peft.finetune import inherit_config
        inherit_config(exp, {n for n in FLAGS if FLAGS[n].present})
    m = distill(exp)
    print()
    if m["task"] == "lm":
        from slm_tf.distill.lm import print_distill_summary
        print_distill_summary(m, exp)
        return
    if m["task"] == "ner":
        from slm_tf.distill.ner import print_ner_distill_summary
        print_ner_distill_summary(m, exp)
        return
    print_table([[m["data"]["name"], exp.model.model, f"{m['accuracy']:.4f}",
                  f"{m['teacher_accuracy']:.4f}", f"{m['teacher_agreement']:.4f}",
                  f"{m['num_params']:,}", f"{m['teacher_num_params']:,}",
                  f"{m['train_examples_per_s']:.0f}"]],
                ["data", "student", "student acc", "teacher acc", "agreement", "student params",
                 "teacher params", "train ex/s"])
    print(f"\nstudent run: {exp.train.output_dir}; TensorBoard: tensorboard --logdir "
          f"{exp.train.output_dir}/logs")


if __name__ == "__main__":
    run(main)
