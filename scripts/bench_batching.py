"""Benchmark: what request batching buys, in one run: the interpreter's own ceiling and the
server with batching off vs on (same export, same clients).

  python scripts/bench_batching.py --export_dir=runs/teacher/export --output=runs/bench_batching.json

1. Interpreter: LiteRT ``invoke`` of the export's dynamic-batch TFLite file (export.py
   --dynamic_batch) at each --batch_sizes, with 1 and with --num_workers interpreters running
   side by side (one thread each, as the server's workers run them): texts per second and
   milliseconds per text. The best batch size's texts/s over batch 1's is the most batching
   can gain, whatever the HTTP side does.
2. Server: scripts/serve.py on 127.0.0.1 with --num_workers workers, batching off
   (--max_batch_size=1) then on (--max_batch_size, --batch_timeout_ms), each loaded by
   --concurrency closed-loop clients for --duration_s (slm_tf.serving.loadtest): requests/s,
   p50/p95/p99, mean batch, and the model's milliseconds per request.

The JSON holds both, the gains (server on/off, interpreter best/batch 1), the share of the
ceiling the server reaches, and the load average next to every number.
"""
import os
import subprocess
import sys
import tempfile
import threading
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
flags.DEFINE_list("batch_sizes", ["1", "8", "32"], "Batch sizes to time in the interpreter.")
flags.DEFINE_float("seconds", 5.0, "Interpreter timing budget per (interpreters, batch size).")
flags.DEFINE_integer("num_workers", 2, "Server workers, and interpreters run side by side.")
flags.DEFINE_integer("max_batch_size", 32, "The server's batch limit with batching on.")
flags.DEFINE_float("batch_timeout_ms", 5.0, "The server's batch wait with batching on.")
flags.DEFINE_integer("concurrency", 32, "Closed-loop clients of the server runs.")
flags.DEFINE_float("duration_s", 30.0, "Seconds of load per server run.")
flags.DEFINE_integer("port", 8591, "Loopback port of the server runs.")
flags.DEFINE_bool("server", True, "Also run the server part (off: the interpreter only).")
flags.mark_flag_as_required("export_dir")
FLAGS = flags.FLAGS


def _load() -> list:
    return [round(x, 2) for x in os.getloadavg()]


def time_interpreters(path: str, interpreters: int, batch: int, seconds: float) -> dict:
    """Texts/s of ``interpreters`` LiteRT interpreters (one thread each) invoking ``[batch,
    seq]`` inputs side by side for ``seconds``."""
    from ai_edge_litert.interpreter import Interpreter
    counts, ready = [0] * interpreters, threading.Barrier(interpreters + 1)
    stop = threading.Event()

    def work(i: int) -> None:
        interp = Interpreter(model_path=path, num_threads=1)
        inp = interp.get_input_details()[0]
        seq = int(inp["shape"][1])
        interp.resize_tensor_input(inp["index"], [batch, seq], strict=False)
        interp.allocate_tensors()
        ids = np.random.default_rng(i).integers(5, 100, (batch, seq), np.int32)
        interp.set_tensor(inp["index"], ids)
        interp.invoke()  # warm-up
        ready.wait()
        while not stop.is_set():
            interp.set_tensor(inp["index"], ids)
            interp.invoke()  # LiteRT releases the GIL while it runs
            counts[i] += 1
    threads = [threading.Thread(target=work, args=(i,)) for i in range(interpreters)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    texts = sum(counts) * batch
    return {"interpreters": interpreters, "batch": batch, "texts_per_s": round(texts / wall, 2),
            "ms_per_text_per_interpreter": round(1000 * wall * interpreters / max(texts, 1), 3),
            "load_average": _load()}


def serve_and_load(export_dir: str, server_flags: list) -> dict:
    """One scripts/serve.py run on 127.0.0.1 under the closed-loop load; its report."""
    from slm_tf.serving.loadtest import LoadTestConfig, run_load
    import urllib.request
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    url = f"http://127.0.0.1:{FLAGS.port}"
    args = [sys.executable, os.path.join(repo, "scripts", "serve.py"),
            f"--model=bench={export_dir}", f"--port={FLAGS.port}",
            f"--num_workers={FLAGS.num_workers}", *server_flags]
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 300
            while True:
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    raise UserError(f"the server did not start: {log.read()[-2000:]}")
                try:
                    with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.5)
            before = _load()
            report = run_load(LoadTestConfig(url=url, model="bench",
                                             concurrency=FLAGS.concurrency,
                                             duration_s=FLAGS.duration_s))
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    return {"server_flags": server_flags, **report,
            "load_average_before": before, "load_average_after": _load()}


@friendly_errors
def main(argv):
    del argv
    manifest = read_json(f"{FLAGS.export_dir}/{MANIFEST}", "export the run with export.py")
    path, resizable = tflite_file(FLAGS.export_dir, manifest)
    if not resizable:
        raise UserError(f"{FLAGS.export_dir} has no dynamic-batch TFLite file. Fix: export with "
                        "scripts/export.py --dynamic_batch")
    result = {"export_dir": FLAGS.export_dir, "file": path, "command": " ".join(sys.argv),
              "interpreter": []}
    rows = []
    for n in sorted({1, FLAGS.num_workers}):
        base = None
        for batch in map(int, FLAGS.batch_sizes):
            r = time_interpreters(path, n, batch, FLAGS.seconds)
            base = base or r["texts_per_s"]
            r["gain_vs_batch_1"] = round(r["texts_per_s"] / base, 3)
            result["interpreter"].append(r)
            rows.append([n, batch, r["texts_per_s"], r["ms_per_text_per_interpreter"],
                         f"{r['gain_vs_batch_1']:.2f}x", r["load_average"][0]])
    print_table(rows, ["interpreters", "batch", "texts/s", "ms/text each", "gain", "load"])
    same = [r for r in result["interpreter"] if r["interpreters"] == FLAGS.num_workers]
    result["interpreter_ceiling"] = max(r["gain_vs_batch_1"] for r in same)
    if FLAGS.server:
        off = serve_and_load(FLAGS.export_dir, ["--max_batch_size=1"])
        on = serve_and_load(FLAGS.export_dir, [f"--max_batch_size={FLAGS.max_batch_size}",
                                               f"--batch_timeout_ms={FLAGS.batch_timeout_ms}"])
        result.update(server_off=off, server_on=on)
        gain = on["throughput_rps"] / max(off["throughput_rps"], 1e-9)
        result["server_gain"] = round(gain, 3)
        result["server_gain_share_of_ceiling"] = round(gain / result["interpreter_ceiling"], 3)
        print_table([[name, r["throughput_rps"], r["latency_ms"]["p50"], r["latency_ms"]["p99"],
                      r["errors"], r.get("mean_batch_size"), r.get("model_ms_per_request"),
                      r["load_average_before"][0]] for name, r in (("off", off), ("on", on))],
                    ["batching", "req/s", "p50 ms", "p99 ms", "errors", "mean batch",
                     "model ms/req", "load"])
        print(f"\nserver gain {gain:.2f}x; interpreter ceiling "
              f"{result['interpreter_ceiling']:.2f}x ({FLAGS.num_workers} interpreters)")
    write_json(FLAGS.output, result)
    print(f"written to {FLAGS.output}")


if __name__ == "__main__":
    run(main)
