"""The LM benchmark: every exported file of a language model through its real runtime in a
fresh process (:mod:`slm_tf.export.lm_runtimes`), against the Keras model: test bits per
character scored through ``prefill``, agreement of greedy continuations (identical prompts over
N new tokens; at a divergence, whether Keras's top-2 logits were within 1e-3, a near-tie), time
to first token for a 64-token prompt, decode tokens/s on 1 and 2 threads, size, peak memory.
Writes ``benchmark.json`` and ``benchmark.md``."""
import json
import math
import os
import subprocess
import sys
import tempfile
from typing import Dict, List

import numpy as np
import tensorflow as tf
from absl import logging

from slm_tf.cli import print_table
from slm_tf.config import from_dict
from slm_tf.data.config import DataConfig
from slm_tf.errors import UserError
from slm_tf.io_utils import write_json, write_text
from slm_tf.train.artifacts import MODEL_FILE

NEAR_TIE = 1e-3
TIMING_PROMPT = 64
# Float files must reproduce Keras's greedy text for this share of prompts (49 of 50), and
# every divergence must start at a near-tie; quantized files are reported, not gated.
MIN_GREEDY_AGREEMENT = {"tflite_float": 0.98, "onnx": 0.98, "saved_model": 0.98}
COLUMNS = ("format", "file_bytes", "bytes_vs_tflite_float", "bits_per_character",
           "bpc_vs_keras", "greedy_identical", "ttft_ms_1t", "decode_tokens_per_s_1t",
           "decode_tokens_per_s_2t", "peak_rss_bytes")


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def lm_size_breakdown(tflite_bytes: bytes) -> Dict[str, int]:
    """:func:`slm_tf.export.tflite.size_breakdown` of a two-signature LM file, plus how many
    constant bytes the signatures share (the weights, when both read the same buffers) and
    how many only one of them holds (per signature)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from slm_tf.export.tflite import size_breakdown
    model = schema.Model.GetRootAsModel(tflite_bytes, 0)
    users: Dict[int, set] = {}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.TensorsLength()):
            users.setdefault(graph.Tensors(i).Buffer(), set()).add(g)
    size = lambda b: model.Buffers(b).DataLength()
    out = {**size_breakdown(tflite_bytes),
           "shared_buffer_bytes": sum(size(b) for b, g in users.items() if len(g) > 1)}
    for g in range(model.SubgraphsLength()):
        name = model.Subgraphs(g).Name().decode()
        out[f"{name}_only_buffer_bytes"] = sum(size(b) for b, gs in users.items()
                                               if gs == {g})
    return out


def keras_reference(model, windows, prompts, new_tokens):
    """Keras's nats over ``windows`` and greedy ids/gaps (its own cached ``step``)."""
    nats = 0.0
    for start in range(0, len(windows), 64):
        batch = windows[start:start + 64]
        lp = _log_softmax(model(batch[:, :-1], training=False).numpy().astype(np.float64))
        nats -= float(np.take_along_axis(lp, batch[:, 1:, None], -1).sum())
    ids, gaps = [], []
    for prompt in prompts:
        state = model.init_state(1)
        logits, state = model.step(tf.constant(prompt[None], tf.int32), state)
        row, out, gap = logits.numpy()[0, -1], [], []
        for t in range(new_tokens):
            top2 = np.sort(row)[-2:]
            gap.append(float(top2[1] - top2[0]))
            out.append(int(np.argmax(row)))
            if t + 1 == new_tokens:
                break
            logits, state = model.step(tf.constant([[out[-1]]], tf.int32), state)
            row = logits.numpy()[0, -1]
        ids.append(out)
        gaps.append(gap)
    return nats, ids, gaps


def compare_greedy(keras_ids, keras_gaps, ids) -> Dict:
    """Identical continuations, and at each divergence its step and Keras's top-2 gap."""
    divergences = []
    for p, (want, got) in enumerate(zip(keras_ids, ids)):
        step = next((t for t, (a, b) in enumerate(zip(want, got)) if a != b), None)
        if step is not None:
            divergences.append({"prompt": p, "step": step, "keras_top2_gap": keras_gaps[p][step],
                                "near_tie": keras_gaps[p][step] <= NEAR_TIE})
    return {"greedy_identical": len(keras_ids) - len(divergences), "prompts": len(keras_ids),
            "greedy_agreement": 1 - len(divergences) / max(1, len(keras_ids)),
            "divergences": divergences}


def _child(path, inputs, threads, full) -> Dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        proc = subprocess.run([sys.executable, "-m", "slm_tf.export.lm_runtimes", path, inputs,
                               out, str(threads), "1" if full else "0"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"{path}: the runtime failed (exit {proc.returncode}):\n"
                            f"{proc.stderr.strip()[-1500:]}")
        with open(out) as f:
            return json.load(f)


def benchmark_lm_export(export_dir: str, manifest: Dict, run, prompts: int = 50,
                        new_tokens: int = 64, max_windows: int = 0) -> List[Dict]:
    """One record per exported file plus the Keras reference, written to ``export_dir``."""
    from slm_tf.export.lm import step_model
    from slm_tf.tasks import get_task
    model = step_model(run)  # a QAT run: the zoo LM with its int8-grid weights, as exported
    data = get_task("lm").prepare_data(from_dict(DataConfig, manifest["data"]))
    stream = np.asarray(data.stream("test", run.tokenizer), np.int32)
    m = run.max_seq_len
    # Every test token after the first is predicted once, with up to M tokens of context.
    starts = list(range(0, len(stream) - 1, m))
    if max_windows:
        starts = starts[:max_windows]
    windows = [stream[s:s + m + 1] for s in starts]
    full_windows = np.stack([w for w in windows if len(w) == m + 1])
    tail = [w for w in windows if len(w) < m + 1]
    targets = np.concatenate([w[1:] for w in windows])
    # Characters as metrics.json counts them: the text's, plus one per end-of-document token.
    eod = manifest.get("eod_id")
    characters = len(run.tokenizer.detokenize(targets.tolist())) + int(np.sum(targets == eod))
    prompt_len = min(TIMING_PROMPT, m - 1)
    if len(stream) < prompt_len + 1 or prompts < 1:
        raise UserError(f"{export_dir}: the test split has {len(stream)} tokens, too few for "
                        f"{prompt_len}-token prompts")
    new_tokens = min(new_tokens, m - prompt_len)
    prompt_starts = np.linspace(0, len(stream) - prompt_len, prompts).astype(int)
    prompt_ids = np.stack([stream[s:s + prompt_len] for s in prompt_starts])
    logging.info("Keras reference: %d windows, %d prompts x %d tokens", len(windows), prompts,
                 new_tokens)
    nats, keras_ids, keras_gaps = keras_reference(model, full_windows, prompt_ids,
                                                  new_tokens)
    for w in tail:  # the last, shorter window
        lp = _log_softmax(model(w[None, :-1], training=False).numpy()[0].astype(np.float64))
        nats -= float(lp[np.arange(len(w) - 1), w[1:]].sum())
    keras_bpc = nats / characters / math.log(2)
    records = [{"format": "keras", "path": MODEL_FILE, "bits_per_character": keras_bpc,
                "file_bytes": os.path.getsize(os.path.join(run.run_dir, MODEL_FILE)),
                "greedy_identical": prompts, "prompts": prompts}]
    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, "inputs.npz")
        np.savez(inputs, windows=full_windows, prompts=prompt_ids, context=m,
                 new_tokens=new_tokens, timing_prompt=stream[:prompt_len])
        for f in manifest["files"]:
            path = os.path.join(export_dir, f["path"])
            logging.info("benchmarking %s", f["format"])
            one = _child(path, inputs, 1, full=True)
            two = _child(path, inputs, 2, full=False)
            file_nats = one["nats"]
            for w in tail:  # the tail window goes through Keras in both (a few tokens)
                lp = _log_softmax(model(w[None, :-1], training=False).numpy()[0]
                                  .astype(np.float64))
                file_nats -= float(lp[np.arange(len(w) - 1), w[1:]].sum())
            bpc = file_nats / characters / math.log(2)
            rec = {"format": f["format"], "path": f["path"], "file_bytes": f["file_bytes"],
                   **({"size_breakdown": lm_size_breakdown(open(path, "rb").read())}
                      if path.endswith(".tflite") else {}),
                   "bits_per_character": bpc, "bpc_vs_keras": bpc / keras_bpc - 1,
                   **compare_greedy(keras_ids, keras_gaps, one["greedy_ids"]),
                   "ttft_ms_1t": one["ttft_ms"], "ttft_ms_2t": two["ttft_ms"],
                   "decode_tokens_per_s_1t": one["decode_tokens_per_s"],
                   "decode_tokens_per_s_2t": two["decode_tokens_per_s"],
                   "peak_rss_bytes": one["peak_rss_bytes"]}
            floor = MIN_GREEDY_AGREEMENT.get(f["format"])
            if floor is not None and (rec["greedy_agreement"] < floor or not all(
                    d["near_tie"] for d in rec["divergences"])):
                rec["parity_failure"] = (f"greedy continuations identical for "
                                         f"{rec['greedy_identical']}/{prompts} prompts (floor "
                                         f"{floor:.0%}, divergences must start at near-ties)")
            records.append(rec)
    base = next((r for r in records if r["format"] == "tflite_float"), None)
    for r in records:
        if base and r["format"] != "keras":
            r["bytes_vs_tflite_float"] = r["file_bytes"] / base["file_bytes"]
    summary = {"test_characters": characters, "test_tokens": int(len(targets)),
               "prompt_tokens": prompt_len, "new_tokens": new_tokens, "load_average":
               os.getloadavg()}
    for r in records:
        r.update(summary)
    from slm_tf.export.benchmark import RESULT_FILE, TABLE_FILE, _cell
    write_json(os.path.join(export_dir, RESULT_FILE), records)
    rows = [[_cell(r.get(c)) for c in COLUMNS] for r in records]
    write_text(os.path.join(export_dir, TABLE_FILE), print_table(rows, COLUMNS) + "\n")
    return records
