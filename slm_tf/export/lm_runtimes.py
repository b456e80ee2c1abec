"""The device side of the LM benchmark: one exported file's ``prefill``/``decode`` through its
real runtime (LiteRT, onnxruntime, or TensorFlow for the SavedModel), run in a fresh process:

  python -m slm_tf.export.lm_runtimes <file> <inputs.npz> <result.json> <threads> <full:0|1>

``inputs.npz`` holds ``windows`` [n, M + 1] (scored through prefill: nats of each next token),
``prompts`` [p, k] (greedy continuations of ``new_tokens``) and ``timing_prompt`` [64].
Imports no TensorFlow unless the file is a SavedModel.
"""
import json
import os
import sys
import time

import numpy as np

from slm_tf.export.runtimes import peak_rss_bytes


class _LiteRT:
    def __init__(self, path, threads):
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_path=path, num_threads=threads)
        self._prefill = interpreter.get_signature_runner("prefill")
        self._decode = interpreter.get_signature_runner("decode")

    def prefill(self, ids):
        out = self._prefill(ids=ids)
        return out["logits"], out["cache"]

    def decode(self, token, cache, position):
        out = self._decode(token=token, cache=cache, position=position)
        return out["logits"], out["cache"]


class _Onnx:
    def __init__(self, path, threads):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.sessions = {k: ort.InferenceSession(os.path.join(path, f"{k}.onnx"), options,
                                                 providers=["CPUExecutionProvider"])
                         for k in ("prefill", "decode")}

    def prefill(self, ids):
        logits, cache = self.sessions["prefill"].run(["logits", "cache"], {"ids": ids})
        return logits, cache

    def decode(self, token, cache, position):
        logits, cache = self.sessions["decode"].run(
            ["logits", "new_cache"], {"token": token, "cache": cache, "position": position})
        return logits, cache


class _SavedModel:
    def __init__(self, path, threads):
        import tensorflow as tf
        if threads:  # None: TensorFlow already runs (a server), its thread pools are set
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        self.tf = tf
        sigs = tf.saved_model.load(path).signatures
        self._prefill, self._decode = sigs["prefill"], sigs["decode"]

    def prefill(self, ids):
        out = self._prefill(ids=self.tf.constant(ids))
        return out["logits"].numpy(), out["cache"].numpy()

    def decode(self, token, cache, position):
        out = self._decode(token=self.tf.constant(token), cache=self.tf.constant(cache),
                           position=self.tf.constant(position))
        return out["logits"].numpy(), out["cache"].numpy()


def open_lm_runtime(path, threads):
    """The runtime of an exported LM file (``.tflite``, ``onnx/`` folder, ``saved_model/``)."""
    if path.endswith(".tflite"):
        return _LiteRT(path, threads)
    if os.path.exists(os.path.join(path, "decode.onnx")):
        return _Onnx(path, threads)
    return _SavedModel(path, threads)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def score_windows(rt, windows, context):
    """Total nats of every window's next tokens (``windows[:, 1:]`` given ``windows[:, :-1]``)."""
    total = 0.0
    for w in windows:
        ids = np.zeros((1, context), np.int32)
        n = len(w) - 1
        ids[0, :n] = w[:-1]
        logits, _ = rt.prefill(ids)
        lp = _log_softmax(logits[0, :n].astype(np.float64))
        total -= float(lp[np.arange(n), w[1:]].sum())
    return total


def greedy(rt, prompt, new_tokens, context):
    """``(ids, top-2 gaps)``: the greedy continuation and, per step, the logit gap between the
    best and second-best token."""
    ids = np.zeros((1, context), np.int32)
    ids[0, :len(prompt)] = prompt
    logits, cache = rt.prefill(ids)
    row = logits[0, len(prompt) - 1]
    out, gaps = [], []
    for t in range(new_tokens):
        top2 = np.sort(row)[-2:]
        gaps.append(float(top2[1] - top2[0]))
        out.append(int(np.argmax(row)))
        if t + 1 == new_tokens:
            break
        row, cache = rt.decode(np.array([[out[-1]]], np.int32), cache,
                               np.array([len(prompt) + t], np.int32))
        row = row[0]
    return out, gaps


def timings(rt, prompt, context, decode_steps=128, repeats=5):
    """Time to first token (median prefill of ``prompt``) and decode tokens/s."""
    ids = np.zeros((1, context), np.int32)
    ids[0, :len(prompt)] = prompt
    rt.prefill(ids)  # warm up
    ttft = []
    for _ in range(repeats):
        start = time.perf_counter()
        logits, cache = rt.prefill(ids)
        int(np.argmax(logits[0, len(prompt) - 1]))
        ttft.append(time.perf_counter() - start)
    token = np.array([[int(np.argmax(logits[0, len(prompt) - 1]))]], np.int32)
    rt.decode(token, cache, np.array([len(prompt)], np.int32))  # warm up
    start = time.perf_counter()
    for t in range(decode_steps):
        row, cache = rt.decode(token, cache, np.array([len(prompt) + t], np.int32))
        token = np.array([[int(np.argmax(row[0]))]], np.int32)
    seconds = time.perf_counter() - start
    return {"ttft_ms": 1000 * float(np.median(ttft)), "decode_tokens_per_s": decode_steps / seconds}


def main():
    path, inputs, result, threads, full = sys.argv[1:6]
    data = np.load(inputs)
    context = int(data["context"])
    rt = open_lm_runtime(path, int(threads))
    out = timings(rt, data["timing_prompt"], context)
    if full == "1":
        out["nats"] = score_windows(rt, data["windows"], context)
        runs = [greedy(rt, p, int(data["new_tokens"]), context) for p in data["prompts"]]
        out["greedy_ids"] = [r[0] for r in runs]
        out["greedy_gaps"] = [r[1] for r in runs]
    out["peak_rss_bytes"] = peak_rss_bytes()
    with open(result, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
