"""``ExportConfig``: which formats a run is exported to. TensorFlow-free, so export.py defines
and checks its flags before TensorFlow loads."""
import dataclasses

from slm_tf.config import field, positive

TFLITE_FORMATS = ("tflite_int8", "tflite_dynamic", "tflite_fp16", "tflite_float")
# The registered export formats (slm_tf.export.run.FORMATS), listed here because the registry
# loads TensorFlow; the registry refuses a name missing here and checks all are registered.
EXPORT_FORMATS = TFLITE_FORMATS + ("onnx", "saved_model")


def are_export_formats(formats) -> bool:
    """True when every name in ``formats`` is an export format."""
    return formats is not None and all(f in EXPORT_FORMATS for f in formats)


@dataclasses.dataclass
class ExportConfig:
    run_dir: str = field("", "The --output_dir of a finished train/distill/compress run.")
    formats: list = field(list(EXPORT_FORMATS), f"Formats to write: {', '.join(EXPORT_FORMATS)}.",
                          validate=are_export_formats,
                          rule=f"a list of {', '.join(EXPORT_FORMATS)}")
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
