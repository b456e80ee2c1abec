"""``ExportConfig``: which formats a run is exported to. TensorFlow-free, so export.py defines
and checks its flags before TensorFlow loads."""
import dataclasses

from slm_tf.config import field, positive

TFLITE_FORMATS = ("tflite_int8", "tflite_dynamic", "tflite_fp16", "tflite_float")


@dataclasses.dataclass
class ExportConfig:
    run_dir: str = field("", "The --output_dir of a finished train/distill/compress run.")
    formats: list = field(["tflite_int8", "tflite_fp16", "tflite_dynamic", "tflite_float",
                           "onnx", "saved_model"], "Formats to write: tflite_int8, tflite_fp16, "
                          "tflite_dynamic, tflite_float, onnx, saved_model.")
    output_dir: str = field("", "Where exported files go (default <run_dir>/export).")
    allow_flex: bool = field(False, "Allow TensorFlow (Flex) ops in TFLite files; the app must "
                             "then link the Flex delegate.")
    calibration_examples: int = field(200, "Training texts that calibrate int8 activation "
                                      "ranges (ignored for a QAT model).", validate=positive,
                                      rule="> 0")
    bundle_format: str = field("auto", "Which TFLite file goes into the Android bundle; auto = "
                               "the first exported of int8, dynamic, fp16, float.",
                               choices=("auto",) + TFLITE_FORMATS)
    dynamic_batch: bool = field(False, "Also write each TFLite file with a dynamic batch "
                                "dimension (model_<q>_batch.tflite): scripts/serve.py resizes "
                                "it to run a whole batch at once. Phone files keep batch 1.")
