"""Benchmark: what batching saves per text inside the interpreter the server runs.

  python scripts/bench_batching.py --export_dir=runs/teacher/export --output=runs/bench_batching.json

For the export's dynamic-batch TFLite file (export.py --dynamic_batch) it times LiteRT
``invoke`` at each --batch_sizes with 1 and 2 threads and reports milliseconds per batch and
per text: the server's batching gain is bounded by (ms per text at batch 1) / (ms per text at
the mean batch it forms), whatever the HTTP side does.
"""
import os
import time

import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
import numpy as np
from absl import flags

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.errors import UserError
from slm_tf.io_utils import read_json, write_json
from slm_tf.serving.predictors import MANIFEST, tflite_file

flags.DEFINE_string("export_dir", None, "An export.py --dynamic_batch output folder.")
flags.DEFINE_string("output", "runs/bench_batching.json", "Where the JSON result goes.")
flags.DEFINE_list("batch_sizes", ["1", "8", "32"], "Batch sizes to time.")
flags.DEFINE_list("threads", ["1", "2"], "Interpreter threads to time.")
flags.DEFINE_float("seconds", 3.0, "Timing budget per (threads, batch size).")
flags.mark_flag_as_required("export_dir")
FLAGS = flags.FLAGS


def time_invoke(path: str, threads: int, batch: int, seconds: float) -> float:
    """Seconds per ``invoke`` of a [batch, seq] input (median of the runs in ``seconds``)."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=path, num_threads=threads)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [batch, int(inp["shape"][1])], strict=False)
    interp.allocate_tensors()
    ids = np.random.default_rng(0).integers(5, 100, (batch, int(inp["shape"][1])), np.int32)
    interp.set_tensor(inp["index"], ids)
    interp.invoke()  # warm-up
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t = time.perf_counter()
        interp.set_tensor(inp["index"], ids)
        interp.invoke()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


@friendly_errors
def main(argv):
    del argv
    manifest = read_json(f"{FLAGS.export_dir}/{MANIFEST}", "export the run with export.py")
    path, resizable = tflite_file(FLAGS.export_dir, manifest)
    if not resizable:
        raise UserError(f"{FLAGS.export_dir} has no dynamic-batch TFLite file. Fix: export with "
                        "scripts/export.py --dynamic_batch")
    rows, result = [], {"export_dir": FLAGS.export_dir, "file": path, "runs": []}
    for threads in map(int, FLAGS.threads):
        base = None
        for batch in map(int, FLAGS.batch_sizes):
            sec = time_invoke(path, threads, batch, FLAGS.seconds)
            per_text = sec / batch
            base = base or per_text
            result["runs"].append({"threads": threads, "batch": batch,
                                   "ms_per_batch": round(sec * 1000, 3),
                                   "ms_per_text": round(per_text * 1000, 3),
                                   "gain_vs_batch_1": round(base / per_text, 2)})
            rows.append([threads, batch, f"{sec * 1000:.2f}", f"{per_text * 1000:.3f}",
                         f"{base / per_text:.2f}x"])
    result["command"] = (f"python scripts/bench_batching.py --export_dir={FLAGS.export_dir} "
                         f"--batch_sizes={','.join(FLAGS.batch_sizes)} "
                         f"--threads={','.join(FLAGS.threads)} --seconds={FLAGS.seconds}")
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    write_json(FLAGS.output, result)
    print_table(rows, ["threads", "batch", "ms/batch", "ms/text", "gain"])
    print(f"\nload average {result['load_average']}; written to {FLAGS.output}")


if __name__ == "__main__":
    run(main)
