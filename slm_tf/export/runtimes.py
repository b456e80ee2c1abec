"""The runtimes an exported file runs in on the device side: LiteRT for ``.tflite``,
onnxruntime for ``.onnx``, TensorFlow for a SavedModel directory.

Imports no TensorFlow at module level (only the SavedModel runtime loads it, lazily), so a
process that measures a TFLite or ONNX file pays only for that runtime's memory.
"""
import os
import resource
import time
from typing import Callable, Dict

import numpy as np

from slm_tf.errors import CorruptArtifactError, UserError

INPUT_NAME = "ids"  # the exporters' input name (slm_tf.models.INPUT_NAME, without importing TF)
_RUNTIMES: Dict[str, Callable] = {}
# The outputs measure() keeps for every test row (the last two when the file abstains).
ARRAY_OUTPUTS = ("logits", "probabilities", "oos_score", "abstain")


def _runtime(suffix: str):
    def deco(cls):
        _RUNTIMES[suffix] = cls
        return cls
    return deco


@_runtime(".tflite")
class LiteRTRuntime:
    """One LiteRT interpreter on the file's default signature; rows run one at a time because
    the TFLite graph has a static batch of 1 (as an app calls it)."""

    def __init__(self, path: str, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter
        self.interpreter = Interpreter(model_path=path, num_threads=threads)
        self.runner = self.interpreter.get_signature_runner()

    def logits(self, ids: np.ndarray) -> np.ndarray:
        return np.concatenate([self.runner(**{INPUT_NAME: row[np.newaxis]})["logits"]
                               for row in ids.astype(np.int32)])

    def outputs(self, ids: np.ndarray) -> Dict[str, np.ndarray]:
        """Every named output of the signature for a batch-1 ``ids``."""
        return self.runner(**{INPUT_NAME: ids.astype(np.int32)})


@_runtime(".onnx")
class OnnxRuntime:
    """An onnxruntime CPU session (dynamic batch)."""

    def __init__(self, path: str, threads: int = 1):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def logits(self, ids: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {INPUT_NAME: ids.astype(np.int32)})[0]

    def outputs(self, ids: np.ndarray) -> Dict[str, np.ndarray]:
        """Every named output of the graph."""
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, {INPUT_NAME: ids.astype(np.int32)})))


@_runtime("")
class SavedModelRuntime:
    """TensorFlow's SavedModel loader on the ``serving_default`` (ids) signature."""

    def __init__(self, path: str, threads: int = 1):
        import slm_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (tokenizer ops inside the SavedModel)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow already ran in this process: its pools are fixed (the benchmark
            # always starts a fresh process, so its thread counts hold)
        self.fn = tf.saved_model.load(path).signatures["serving_default"]

    def logits(self, ids: np.ndarray) -> np.ndarray:
        return self.outputs(ids)["logits"]

    def outputs(self, ids: np.ndarray) -> Dict[str, np.ndarray]:
        """Every named output of the signature."""
        import tensorflow as tf
        return {k: v.numpy() for k, v in self.fn(**{INPUT_NAME: tf.constant(ids, tf.int32)}).items()}


def open_runtime(path: str, threads: int = 1):
    """The runtime for an exported file (by extension; a directory is a SavedModel)."""
    suffix = "" if os.path.isdir(path) else os.path.splitext(path)[1]
    if suffix not in _RUNTIMES:
        raise ValueError(f"{path}: no runtime for {suffix!r} files; known: {sorted(_RUNTIMES)}")
    return _RUNTIMES[suffix](path, threads)


def check_opens(path: str, fix: str) -> None:
    """Opens ``path`` in its runtime once; a file the runtime rejects (truncated, not a model,
    from an incompatible version) raises a one-line :class:`CorruptArtifactError`."""
    if not os.path.exists(path):
        raise UserError(f"{path}: missing. Fix: {fix}.")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise CorruptArtifactError(path, "a SavedModel folder without saved_model.pb", fix)
        return  # loading TensorFlow here would cost seconds; the benchmark's own load reports
    try:
        open_runtime(path)
    except Exception as e:  # noqa: BLE001  (whatever the runtime rejects, the file is at fault)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise CorruptArtifactError(path, f"the runtime cannot open it ({first})", fix) from e


def latency_ms(runtime, ids: np.ndarray, warmup: int = 20) -> np.ndarray:
    """Wall time in ms of each single-row call over ``ids`` (batch 1), after ``warmup`` calls."""
    for row in ids[:warmup]:
        runtime.logits(row[np.newaxis])
    times = []
    for row in ids:
        start = time.perf_counter()
        runtime.logits(row[np.newaxis])
        times.append((time.perf_counter() - start) * 1e3)
    return np.asarray(times)


def measure(path: str, ids_file: str, threads: int, latency_queries: int = 300) -> Dict:
    """What the benchmark needs from one file in this (fresh) process: logits on every row of
    ``ids_file``, p50/p95 batch-1 latency with ``threads`` threads, and this process's peak
    resident memory. One process per thread count: TensorFlow fixes its pools at start-up."""
    ids = np.load(ids_file)
    runtime = open_runtime(path, threads)
    # Row by row, as an app calls it (a 3k-row batch would measure the batch's own buffers).
    rows = [runtime.outputs(row[np.newaxis]) for row in ids]
    # The file's own probabilities (calibrated in-graph) when it has that output.
    found = {k: np.concatenate([r[k] for r in rows]) for k in ARRAY_OUTPUTS if k in rows[0]}
    queries = ids[np.random.default_rng(0).permutation(len(ids))[:latency_queries]]
    t = latency_ms(runtime, queries)
    return {**found, f"p50_ms_{threads}t": float(np.percentile(t, 50)),
            f"p95_ms_{threads}t": float(np.percentile(t, 95)),
            "peak_rss_bytes": peak_rss_bytes()}


def peak_rss_bytes() -> int:
    """This process's peak resident memory. Linux's VmHWM belongs to the address space, so
    unlike ``ru_maxrss`` it does not inherit the (TensorFlow-sized) parent's peak across
    fork + exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    # python -m slm_tf.export.runtimes <file> <ids.npy> <result.npz> <threads> <queries>: the
    # benchmark runs each file in a fresh process so peak memory is that file's alone.
    import sys
    _path, _ids, _result = sys.argv[1:4]
    _r = measure(_path, _ids, int(sys.argv[4]), int(sys.argv[5]))
    np.savez(_result, **{k: np.asarray(v) for k, v in _r.items()})
