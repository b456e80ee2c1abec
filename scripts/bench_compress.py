"""Benchmark: compressing the distilled banking77 student with tfmot.

  python scripts/bench_compress.py --run_dir=runs/bench_distill/kd_seed1 \
      --teacher_dir=runs/teacher --output_dir=runs/bench_compress

From one finished run (the dense model) it measures:
- pruning: --sparsity magnitude pruning on a polynomial schedule, fine-tuned while the teacher
  keeps teaching; test accuracy and the gzip size of the float TFLite file, dense vs pruned;
- QAT: quantization-aware fine-tuning (also distilled); test accuracy of the Keras QAT model
  and of its int8 TFLite file in LiteRT, against post-training full-integer quantization (PTQ)
  of the dense model calibrated on training rows;
- PQAT (--pqat): prune-preserving QAT of the pruned run: accuracy, sparsity and gzip size of
  its int8 file.

TFLite accuracies run every test example through the LiteRT interpreter at batch 1, as an app
does. Writes <output_dir>/bench_compress.json (the compressed runs are next to it).
"""
import os

import numpy as np
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags, logging

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.config import from_dict
from slm_tf.data.config import DataConfig
from slm_tf.io_utils import atomic_path, write_json
from slm_tf.pipeline.config import CONFIGS

flags.DEFINE_string("run_dir", "runs/bench_distill/kd_seed1", "The dense (distilled) run.")
flags.DEFINE_string("teacher_dir", "runs/teacher", "Teacher that keeps teaching while the "
                    "student is compressed (empty: fine-tune on the labels only).")
flags.DEFINE_string("output_dir", "runs/bench_compress", "Where the compressed runs, the "
                    "TFLite files and bench_compress.json go.")
flags.DEFINE_string("recipe", os.path.join(CONFIGS, "banking77_compress.flags"),
                    "compress.py flagfile: how pruning and QAT fine-tune (epochs, learning "
                    "rates, schedule, KD weight, seed).")
flags.DEFINE_float("sparsity", 0.8, "Pruning target.")
flags.DEFINE_bool("pqat", True, "Also run prune-preserving QAT on the pruned run.")
flags.DEFINE_integer("calibration_rows", 200, "Training rows calibrating the PTQ model.")
FLAGS = flags.FLAGS


def _compress(name: str, source: str = "", overrides=(), qat_stage: bool = False):
    from slm_tf.compress.run import compress_recipe  # TensorFlow
    logging.info("compressing: %s", name)
    return compress_recipe(FLAGS.recipe, source or FLAGS.run_dir,
                           os.path.join(FLAGS.output_dir, name),
                           [f"--teacher_dir={FLAGS.teacher_dir}", "--overwrite",  # re-measure
                            *overrides], qat_stage)


def _test_split(run):
    from slm_tf.data.pipeline import make_dataset, prepare_data  # TensorFlow
    dcfg = from_dict(DataConfig, run.config["data"])
    data = prepare_data(dcfg)
    ids, labels = [], []
    for x, y in make_dataset(data, "test", run.tokenizer, dcfg, training=False):
        ids.append(x.numpy())
        labels.append(y.numpy())
    return data, dcfg, np.concatenate(ids), np.concatenate(labels)


def _litert_accuracy(tflite: bytes, name: str, ids: np.ndarray, labels: np.ndarray):
    """Writes the file (kept as an artifact) and scores it in LiteRT, one row at a time."""
    from slm_tf.compress.report import gzip_size
    from slm_tf.export.runtimes import LiteRTRuntime
    path = os.path.join(FLAGS.output_dir, f"{name}.tflite")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(tflite)
    logits = LiteRTRuntime(path).logits(ids)
    return float((logits.argmax(1) == labels).mean()), len(tflite), gzip_size(tflite)


@friendly_errors
def main(argv):
    # TensorFlow loads here, after the flags are parsed and checked.
    from slm_tf.compress.report import tflite_blob
    from slm_tf.compress.run import sample_ids
    from slm_tf.export.tflite import to_tflite
    from slm_tf.train.artifacts import load_run
    del argv
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    dense = load_run(FLAGS.run_dir)
    data, dcfg, ids, labels = _test_split(dense)
    seq_len = dcfg.max_seq_len
    dense_logits = dense.model.predict(ids, batch_size=256, verbose=0)
    dense_accuracy = float((dense_logits.argmax(1) == labels).mean())
    rep = sample_ids(data, dense, dcfg, FLAGS.calibration_rows)
    ptq_accuracy, ptq_bytes, ptq_gzip = _litert_accuracy(
        to_tflite(dense.model, "int8", seq_len, representative_ids=rep), "dense_ptq_int8",
        ids, labels)
    float_accuracy, dense_bytes, dense_gzip = _litert_accuracy(
        to_tflite(dense.model, "float", seq_len), "dense_float", ids, labels)

    pruned = _compress("pruned", overrides=[f"--prune={FLAGS.sparsity}", "--noqat",
                                            "--cluster=0"])
    pruned_run = load_run(os.path.join(FLAGS.output_dir, "pruned"))
    pruned_tflite_accuracy, pruned_bytes, pruned_gzip = _litert_accuracy(
        tflite_blob(pruned_run.model, seq_len, "float"), "pruned_float", ids, labels)

    qat = _compress("qat", qat_stage=True)
    qat_run = load_run(os.path.join(FLAGS.output_dir, "qat"))
    qat_int8_accuracy, qat_bytes, qat_gzip = _litert_accuracy(
        tflite_blob(qat_run.model, seq_len, "int8"), "qat_int8", ids, labels)

    result = {
        "dense_accuracy": dense_accuracy,
        "pruned_accuracy": pruned["accuracy_after"],
        "sparsity": pruned["sparsity"],
        "dense_gzip_bytes": dense_gzip,
        "pruned_gzip_bytes": pruned_gzip,
        "qat_keras_accuracy": qat["accuracy_after"],
        "qat_int8_tflite_accuracy": qat_int8_accuracy,
        "ptq_int8_tflite_accuracy": ptq_accuracy,
        "gzip_note": "gzip -9 of the float TFLite flatbuffer (dense vs stripped pruned model)",
        "pruned_drop_points": 100 * (dense_accuracy - pruned["accuracy_after"]),
        "gzip_ratio": dense_gzip / pruned_gzip,
        "qat_int8_vs_keras_points": 100 * (qat_int8_accuracy - qat["accuracy_after"]),
        "qat_int8_vs_ptq_points": 100 * (qat_int8_accuracy - ptq_accuracy),
        "dense_float_tflite_accuracy": float_accuracy,
        "pruned_float_tflite_accuracy": pruned_tflite_accuracy,
        "dense_tflite_bytes": dense_bytes, "pruned_tflite_bytes": pruned_bytes,
        "ptq_int8_bytes": ptq_bytes, "ptq_int8_gzip_bytes": ptq_gzip,
        "qat_int8_bytes": qat_bytes, "qat_int8_gzip_bytes": qat_gzip,
        "test_examples": int(len(labels)),
    }
    if FLAGS.pqat:
        # QAT of the pruned run: its zeros are kept (prune-preserving scheme, keep_sparsity).
        pqat = _compress("pqat", source=os.path.join(FLAGS.output_dir, "pruned"),
                         qat_stage=True)
        pqat_run = load_run(os.path.join(FLAGS.output_dir, "pqat"))
        acc, size, gz = _litert_accuracy(tflite_blob(pqat_run.model, seq_len, "int8"),
                                         "pqat_int8", ids, labels)
        result.update(pqat_keras_accuracy=pqat["accuracy_after"], pqat_int8_tflite_accuracy=acc,
                      pqat_sparsity=pqat["sparsity"], pqat_int8_bytes=size,
                      pqat_int8_gzip_bytes=gz)
    result["targets"] = {
        "pruned_drop_le_1_point": result["pruned_drop_points"] <= 1.0,
        "gzip_ratio_ge_3": result["gzip_ratio"] >= 3.0,
        "qat_int8_loses_le_0.5_point": result["qat_int8_vs_keras_points"] >= -0.5,
        "qat_int8_beats_ptq": qat_int8_accuracy > ptq_accuracy,
    }
    result["settings"] = {name: FLAGS[name].value for name in (
        "run_dir", "teacher_dir", "recipe", "sparsity", "calibration_rows")}
    result["settings"]["recipe_text"] = open(FLAGS.recipe, encoding="utf-8").read()
    path = os.path.join(FLAGS.output_dir, "bench_compress.json")
    write_json(path, result)
    rows = [["dense (Keras)", f"{dense_accuracy:.4f}", f"{dense_gzip:,} (float tflite)"],
            [f"pruned {result['sparsity']:.0%} (Keras)", f"{result['pruned_accuracy']:.4f}",
             f"{pruned_gzip:,} (float tflite)"],
            ["PTQ int8 (LiteRT)", f"{ptq_accuracy:.4f}", f"{ptq_gzip:,}"],
            ["QAT (Keras)", f"{result['qat_keras_accuracy']:.4f}", ""],
            ["QAT int8 (LiteRT)", f"{qat_int8_accuracy:.4f}", f"{qat_gzip:,}"]]
    if FLAGS.pqat:
        rows.append(["PQAT int8 (LiteRT)", f"{result['pqat_int8_tflite_accuracy']:.4f}",
                     f"{result['pqat_int8_gzip_bytes']:,}"])
    print_table(rows, ["model", "test accuracy", "gzip bytes"])
    print(f"targets: {result['targets']}\n{path}")


if __name__ == "__main__":
    run(main)
