"""Train a causal language model on raw text: train.py with --task=lm and LM defaults.

  python scripts/train_lm.py --data=corpus_folder/ --output_dir=runs/lm
  python scripts/train_lm.py --flagfile=configs/shakespeare_gpt.flags --output_dir=runs/shakespeare

--data is a folder of .txt files (each file one document), one .txt file, or a CSV/TSV/JSONL
with --text_column. --validation_data/--test_data name separate files or documents of --data
(comma-separated file names). Rerunning the same command after a crash resumes.
"""
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, run
from slm_tf.config import define_flags, from_flags
from slm_tf.data.config import DataConfig
from slm_tf.models import ModelConfig
from slm_tf.tasks.lm import LM_DEFAULTS, print_lm_summary
from slm_tf.tokenizers import TokenizerConfig
from slm_tf.train.trainer import ExperimentConfig, TrainConfig, train

for _cfg in (DataConfig, TokenizerConfig, ModelConfig, TrainConfig):
    define_flags(_cfg)
for _name, _value in LM_DEFAULTS.items():
    flags.FLAGS.set_default(_name, _value)


@friendly_errors
def main(argv):
    exp = ExperimentConfig(from_flags(DataConfig), from_flags(TokenizerConfig),
                           from_flags(ModelConfig), from_flags(TrainConfig))
    print_lm_summary(train(exp), exp)


if __name__ == "__main__":
    run(main)
