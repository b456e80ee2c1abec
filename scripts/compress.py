"""Compress a trained or distilled run with tfmot: pruning (incl. 2:4), QAT, clustering and
their combinations, optionally still distilling from the teacher.

  python scripts/compress.py --run_dir=runs/student --prune=0.8 --prune_schedule=polynomial \
      --structured=2:4 --qat --cluster=0 --epochs=4 --output_dir=runs/student_c
  python scripts/compress.py --flagfile=configs/banking77_compress.flags \
      --run_dir=runs/bench_distill/kd_seed1 --output_dir=runs/student_c

The output directory is a normal run (model.keras without training wrappers, saved_model/,
tokenizer/, labels.json, config.json, metrics.json) plus compression.json: sparsity per layer,
accuracy and size (raw and gzip) before and after. A --qat model exports to int8 TFLite
without calibration data; load it with slm_tf.train.artifacts.load_run.
"""
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.compress.config import FINETUNE_DEFAULTS, CompressConfig
from slm_tf.config import define_flags, from_flags
from slm_tf.train.config import TrainConfig

define_flags(CompressConfig)
define_flags(TrainConfig)
FLAGS = flags.FLAGS
for _name, _value in FINETUNE_DEFAULTS.items():
    FLAGS.set_default(_name, _value)


def _size(report, when):
    size = report[when]["size"]
    text = f"{size['weights_gzip_bytes']:,}"
    if "tflite_gzip_bytes" in size:
        text += f" / {size['tflite_gzip_bytes']:,} ({size['tflite_quantization']})"
    return text


@friendly_errors
def main(argv):
    # TensorFlow loads here, after the flags are parsed and checked.
    from slm_tf.compress.run import REPORT_FILE, CompressExperiment, compress

    exp = CompressExperiment(from_flags(CompressConfig), from_flags(TrainConfig))
    r = compress(exp)
    print()
    metric = r["headline"]  # accuracy, bits_per_character or entity_f1
    print_table([["before", f"{r[metric + '_before']:.4f}", "", _size(r, "before")],
                 [f"after ({r['mode']})", f"{r[metric + '_after']:.4f}", f"{r['sparsity']:.3f}",
                  _size(r, "after")]],
                ["model", f"test {metric.replace('_', ' ')}", "sparsity",
                 "gzip bytes: weights / tflite"])
    out = exp.train.output_dir
    print(f"\ncompressed run: {out} ({REPORT_FILE}: per-layer sparsity and sizes); "
          f"TensorBoard: tensorboard --logdir {out}/logs")


if __name__ == "__main__":
    run(main)
