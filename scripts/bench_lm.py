"""Language-model benchmark: train through the run framework for a fixed wall-clock budget,
then report test bits per character next to bzip2 -9 and xz -9 on the same test text, and
the speed of cached vs recomputing decoding. Writes ``<output_dir>/bench_lm.json``.

  nice -n 5 python scripts/bench_lm.py --flagfile=configs/shakespeare_gpt.flags \
      --train_minutes=8 --output_dir=runs/bench_lm_gpt
"""
import os
import time

import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, run
from slm_tf.config import define_flags, from_flags
from slm_tf.data.config import DataConfig
from slm_tf.io_utils import write_json
from slm_tf.models import ModelConfig
from slm_tf.tasks.lm import LM_DEFAULTS, print_lm_summary
from slm_tf.tokenizers import TokenizerConfig
from slm_tf.train.trainer import ExperimentConfig, TrainConfig

for _cfg in (DataConfig, TokenizerConfig, ModelConfig, TrainConfig):
    define_flags(_cfg)
for _name, _value in LM_DEFAULTS.items():
    flags.FLAGS.set_default(_name, _value)
flags.DEFINE_float("train_minutes", 8.0, "Wall-clock training budget (minutes).")
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    import tf_keras as keras

    from slm_tf.generation.generate import decoding_speed
    from slm_tf.lm_metrics import compressor_bits_per_character
    from slm_tf.tasks import get_task
    from slm_tf.train.trainer import (finish_run, fit, make_strategy, prepare_tokenizer,
                                      start_run)

    exp = ExperimentConfig(from_flags(DataConfig), from_flags(TokenizerConfig),
                           from_flags(ModelConfig), from_flags(TrainConfig))
    tcfg, dcfg = exp.train, exp.data

    class TimeBudget(keras.callbacks.Callback):
        steps = 0

        def on_train_begin(self, logs=None):
            self.deadline = time.monotonic() + 60 * FLAGS.train_minutes

        def on_train_batch_end(self, batch, logs=None):
            TimeBudget.steps += 1
            if time.monotonic() > self.deadline:
                self.model.stop_training = True

    task = get_task("lm")
    ctx = start_run(tcfg)
    data = task.prepare_data(dcfg)
    tokenizer = prepare_tokenizer(exp.tokenizer, data, ctx.run_dir, ctx.resuming, task)
    steps = task.steps_per_epoch(data, dcfg.batch_size)
    with make_strategy(tcfg.strategy).scope():
        model = task.build_model(exp.model, tokenizer, data, dcfg)
        task.compile(model, tcfg, steps * tcfg.epochs)
    train_ds, val_ds = task.datasets(data, tokenizer, dcfg, tcfg)
    result = fit(model, train_ds, val_ds, tcfg, ctx, steps, dcfg.batch_size, task=task,
                 extra_callbacks=[TimeBudget()])
    m = finish_run(ctx, exp.to_dict(), model, tokenizer, data, dcfg, result, task=task)
    print_lm_summary(m, exp)
    test_text = "".join(data.texts("test"))
    prompt = tokenizer.ids(data.texts("test")[0][:2000])[:64]
    report = {
        "command": "scripts/bench_lm.py " + " ".join(f"--{k}={v}" for k, v in sorted(
            FLAGS.flag_values_dict().items()) if FLAGS[k].present),
        "model": exp.model.model, "num_params": m["num_params"],
        "train_seconds": m["train_seconds"],
        "train_steps": TimeBudget.steps,
        "tokens_seen": TimeBudget.steps * dcfg.batch_size * dcfg.max_seq_len,
        "test_bits_per_character": m["bits_per_character"],
        "validation_bits_per_character": m["validation"]["bits_per_character"],
        "test_characters": len(test_text),
        "compressors_bits_per_character": compressor_bits_per_character(test_text),
        "decoding": decoding_speed(model, prompt, 256),
    }
    write_json(os.path.join(tcfg.output_dir, "bench_lm.json"), report)
    print(report)


if __name__ == "__main__":
    run(main)
