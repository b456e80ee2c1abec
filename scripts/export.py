"""Export a finished run for deployment.

  python scripts/export.py --run_dir=runs/student_c \
      --formats=tflite_int8,tflite_fp16,tflite_dynamic,tflite_float,onnx,saved_model \
      --output_dir=runs/student_c/export

int8 calibrates on a sample of the run's training split (a QAT model needs no calibration).
Any TFLite format also writes ``android/``: the model plus vocabulary, labels and the
tokenizer's rules (see BUILD.md). ``export.json`` lists every file for scripts/benchmark.py.
"""
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.config import define_flags, from_flags
from slm_tf.export.config import ExportConfig

define_flags(ExportConfig)
flags.mark_flag_as_required("run_dir")
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    # TensorFlow loads here, after the flags are parsed and checked.
    from slm_tf.export.run import export_run

    manifest = export_run(from_flags(ExportConfig))
    print_table([[f["format"], f["path"], f"{f['file_bytes']:,}", f"{f['seconds']:.1f}"]
                 for f in manifest["files"]], ["format", "file", "bytes", "seconds"])
    if manifest["android"]:
        print(f"\nAndroid bundle: {manifest['android']['dir']}/ ({manifest['android']['format']})")


if __name__ == "__main__":
    run(main)
