"""Language-model benchmark: train through the run framework (for a wall-clock budget with
``--train_minutes``, a training flag: the learning rate decays over it), then report test bits per character next to bzip2 -9 and xz -9 on the same test text, and
the speed of cached vs recomputing decoding. Writes ``<output_dir>/bench_lm.json``.

  nice -n 5 python scripts/bench_lm.py --flagfile=configs/shakespeare_gpt.flags \
      --train_minutes=8 --output_dir=runs/bench_lm_gpt
  nice -n 5 python scripts/bench_lm.py --decode_run_dir=runs/bench_lm_gpt --output_dir=unused
"""
import os

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
flags.DEFINE_string("decode_run_dir", "", "Only measure cached vs recomputing decoding of this "
                    "finished LM run (64-token test prompt, 256 new tokens) -> "
                    "<run>/bench_decode.json; no training (--output_dir is then unused: "
                    "pass any).")
FLAGS = flags.FLAGS


def measure_decoding(run_dir: str) -> dict:
    """Cached vs recomputing greedy decoding of a saved run, with the load average."""
    from slm_tf.config import from_dict
    from slm_tf.generation.decode import decoding_speed
    from slm_tf.tasks import get_task
    from slm_tf.train.artifacts import load_run
    run = load_run(run_dir)
    data = get_task("lm").prepare_data(from_dict(DataConfig, run.config["data"]))
    prompt = run.tokenizer.ids("".join(data.texts("test"))[:2000])[:64]
    before = os.getloadavg()
    report = {"run_dir": run_dir, **decoding_speed(run.model, prompt, 256),
              "load_average_before": before}
    report["load_average_after"] = os.getloadavg()
    write_json(os.path.join(run_dir, "bench_decode.json"), report)
    print(report)
    return report


@friendly_errors
def main(argv):
    if FLAGS.decode_run_dir:
        measure_decoding(FLAGS.decode_run_dir)
        return

    from slm_tf.generation.decode import decoding_speed
    from slm_tf.lm_metrics import compressor_bits_per_character, scored_text
    from slm_tf.tasks import get_task
    from slm_tf.train.trainer import (finish_run, fit, make_strategy, prepare_tokenizer,
                                      start_run)

    exp = ExperimentConfig(from_flags(DataConfig), from_flags(TokenizerConfig),
                           from_flags(ModelConfig), from_flags(TrainConfig))
    tcfg, dcfg = exp.train, exp.data

    task = get_task("lm")
    ctx = start_run(tcfg)
    data = task.prepare_data(dcfg)
    tokenizer = prepare_tokenizer(exp.tokenizer, data, ctx.run_dir, ctx.resuming, task)
    steps = task.steps_per_epoch(data, dcfg.batch_size)
    with make_strategy(tcfg.strategy).scope():
        model = task.build_model(exp.model, tokenizer, data, dcfg)
        task.compile(model, tcfg, steps * tcfg.epochs)
    train_ds, val_ds = task.datasets(data, tokenizer, dcfg, tcfg)
    result = fit(model, train_ds, val_ds, tcfg, ctx, steps, dcfg.batch_size, task=task)
    m = finish_run(ctx, exp.to_dict(), model, tokenizer, data, dcfg, result, task=task)
    print_lm_summary(m, exp)
    test_text = scored_text(data.texts("test"))
    # The test documents joined: a corpus of short sentences (MSRA) still gives 64 tokens.
    prompt = tokenizer.ids("".join(data.texts("test"))[:2000])[:64]
    report = {
        "command": "scripts/bench_lm.py " + " ".join(f"--{k}={v}" for k, v in sorted(
            FLAGS.flag_values_dict().items()) if FLAGS[k].present),
        "model": exp.model.model, "num_params": m["num_params"],
        "train_seconds": m["train_seconds"],
        "train_minutes_budget": tcfg.train_minutes,
        "train_steps": int(model.optimizer.iterations.numpy()),
        "tokens_seen": int(model.optimizer.iterations.numpy()) * dcfg.batch_size * dcfg.max_seq_len,
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
