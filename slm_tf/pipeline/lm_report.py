"""The language-model pipeline's report: bits per character, size, tokens/s and time to first
token of every stage against the teacher, greedy continuations side by side, plots, a model
card and ``summary.json`` (with a ``final`` entry).

Every number comes from a stage's own files (``metrics.json``, ``compression.json``, an
export's ``benchmark.json``) or is measured here on the stage's Keras model (tokens/s and
time to first token, greedy continuations); each row names its source.
"""
import html
import os
import time
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from slm_tf.compress.report import gzip_size, weights_blob
from slm_tf.export.benchmark import RESULT_FILE
from slm_tf.io_utils import atomic_path, read_json, write_json, write_text
from slm_tf.pipeline.html_page import plots_html, report_page
from slm_tf.train.artifacts import METRICS_FILE, load_run

MODEL_STAGES = ("teacher", "student", "distilled", "pruned", "qat")
PROMPT_TOKENS = 64  # prompt length of the time-to-first-token measurement (issue 16)
NEW_TOKENS = 64
SAMPLES = 3
# The final model may give up this share of the best stage's bits per character for a
# smaller model (the classification report's tolerance, relative here).
FINAL_TOLERANCE = 0.01
COLUMNS = [("name", "model"), ("bits_per_character", "test bits/char"),
           ("num_params", "params"), ("size_bytes", "size (bytes)"),
           ("tflite", "TFLite bytes (compress.py)"), ("tokens_per_s", "tokens/s"),
           ("ttft_ms", "TTFT ms"),
           ("bpc_vs_teacher", "bpc / teacher"), ("size_vs_teacher", "size / teacher")]


def _forward(model):
    return tf.function(lambda x: model(x, training=False),
                       input_signature=[tf.TensorSpec([1, None], tf.int32)])


def greedy(model, prompt_ids: List[int], new_tokens: int, forward=None) -> List[int]:
    """Greedy continuation recomputing the (context-long) window each token: works for every
    stage's model, including QAT graphs that have no incremental ``step``."""
    forward = forward or _forward(model)
    context = int(model.inputs[0].shape[1] or 0) or len(prompt_ids) + new_tokens
    ids = list(prompt_ids)
    for _ in range(new_tokens):
        logits = forward(tf.constant([ids[-context:]], tf.int32))
        ids.append(int(np.argmax(logits.numpy()[0, -1])))
    return ids[len(prompt_ids):]


def keras_speed(model, prompt_ids: List[int], new_tokens: int) -> Dict:
    """Time to first token (the prompt's forward pass) and decode tokens/s of ``model`` on one
    prompt: with its key/value cache or recurrent state where it has ``step``, else by
    recomputing the window (QAT graphs)."""
    if hasattr(model, "step"):
        state = model.init_state(1)
        model.step(tf.constant([prompt_ids], tf.int32), state)  # trace outside the timing
        start = time.perf_counter()
        logits, state = model.step(tf.constant([prompt_ids], tf.int32), model.init_state(1))
        nxt = int(np.argmax(logits.numpy()[0, -1]))
        ttft = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(new_tokens):
            logits, state = model.step(tf.constant([[nxt]], tf.int32), state)
            nxt = int(np.argmax(logits.numpy()[0, -1]))
        return {"ttft_ms": 1000 * ttft, "tokens_per_s": new_tokens /
                (time.perf_counter() - start), "decoding": "cache"}
    forward = _forward(model)
    forward(tf.constant([prompt_ids], tf.int32))
    start = time.perf_counter()
    forward(tf.constant([prompt_ids], tf.int32)).numpy()
    ttft = time.perf_counter() - start
    start = time.perf_counter()
    greedy(model, prompt_ids, new_tokens, forward)
    return {"ttft_ms": 1000 * ttft, "tokens_per_s": new_tokens / (time.perf_counter() - start),
            "decoding": "recompute"}


def _prompts(run, count: int) -> List[List[int]]:
    """``count`` prompts of PROMPT_TOKENS ids from the test split, evenly spaced."""
    from slm_tf.config import from_dict
    from slm_tf.data.config import DataConfig
    from slm_tf.tasks import get_task
    data = get_task(run.task).prepare_data(from_dict(DataConfig, run.config["data"]))
    stream = data.stream("test", run.tokenizer)
    starts = np.linspace(1, max(1, len(stream) - PROMPT_TOKENS - 1), count).astype(int)
    return [[int(t) for t in stream[s:s + PROMPT_TOKENS]] for s in starts]


def _stage_row(stage: str, run_dir: str, prompts: List[List[int]]) -> Dict:
    m = read_json(os.path.join(run_dir, METRICS_FILE))
    run = load_run(run_dir)
    blob = weights_blob(run.model)
    row = {"name": f"{stage} (Keras)", "stage": stage, "format": "keras",
           "bits_per_character": m["bits_per_character"],
           "validation_bits_per_character": m["validation"]["bits_per_character"],
           "num_params": m["num_params"], "size_bytes": len(blob),
           "size_gzip_bytes": gzip_size(blob), "source": os.path.join(run_dir, METRICS_FILE)}
    comp = m.get("compression") or {}
    if "sparsity" in comp:
        row["sparsity"] = comp["sparsity"]
        report = os.path.join(run_dir, "compression.json")
        size = read_json(report)["after"]["size"] if os.path.exists(report) else {}
        if "tflite_bytes" in size:
            row["tflite"] = f"{size['tflite_bytes']:,} ({size['tflite_quantization']})"
    row.update(keras_speed(run.model, prompts[0], NEW_TOKENS))
    row["_continuations"] = [run.tokenizer.detokenize(greedy(run.model, p, NEW_TOKENS))
                             for p in prompts]
    row["_prompts"] = [run.tokenizer.detokenize(p) for p in prompts]
    return row


def _export_rows(stage: str, export_dir: str) -> List[Dict]:
    """Rows of an LM export's ``benchmark.json`` (files, bits per character, speed), when the
    export stage ran."""
    path = os.path.join(export_dir, RESULT_FILE)
    if not os.path.exists(path):
        return []
    rows = []
    records = read_json(path)
    for r in records.get("results", []) if isinstance(records, dict) else records:
        if "bits_per_character" not in r or r.get("format") == "keras":
            continue  # not an exported LM file
        rows.append({"name": f"{stage} {r.get('format')}", "stage": stage,
                     "format": r.get("format"), "bits_per_character": r["bits_per_character"],
                     "size_bytes": r.get("file_bytes"),
                     "tokens_per_s": r.get("decode_tokens_per_s_1t",
                                           r.get("tokens_per_s_1t")),
                     "ttft_ms": r.get("ttft_ms_1t", r.get("ttft_ms")), "source": path})
    return rows


def collect(paths: Dict[str, str], final_stage: str) -> Dict:
    """Every stage's row (Keras, then exported files), ratios to the teacher, the final pick."""
    teacher_run = load_run(paths["teacher"])
    prompts = _prompts(teacher_run, SAMPLES)
    rows = [_stage_row(s, paths[s], prompts) for s in MODEL_STAGES if s in paths]
    rows += _export_rows("final", paths["export"]) if "export" in paths else []
    # The teacher's float TFLite file: the final file's size and speed reference.
    rows += _export_rows("teacher", paths["teacher_export"]) \
        if "teacher_export" in paths else []
    teacher = rows[0]
    for r in rows:
        if r.get("bits_per_character") is not None:
            r["bpc_vs_teacher"] = r["bits_per_character"] / teacher["bits_per_character"]
        if r.get("size_bytes"):
            r["size_vs_teacher"] = r["size_bytes"] / teacher["size_bytes"]
    return {"rows": rows, "teacher": teacher, "final": pick_final(rows, final_stage)}


def pick_final(rows: List[Dict], final_stage: str) -> Dict:
    """The last model stage's smallest exported file whose bits per character is within
    FINAL_TOLERANCE (relative) of its best file; its Keras row when it was not exported."""
    files = [r for r in rows if r["stage"] == "final" and r.get("size_bytes")]
    if not files:
        return next(r for r in rows if r["stage"] == final_stage)
    best = min(r["bits_per_character"] for r in files)
    ok = [r for r in files if r["bits_per_character"] <= best * (1 + FINAL_TOLERANCE)]
    return min(ok, key=lambda r: (r["size_bytes"], r["bits_per_character"]))


def _plots(report: Dict, out: str) -> Dict[str, str]:
    from slm_tf.plotting import pyplot
    plt = pyplot()
    files = {}
    for key, label, name in (("size_bytes", "size (bytes, log)", "bpc_vs_size.png"),
                             ("tokens_per_s", "decode tokens/s (log)", "bpc_vs_tokens_per_s.png")):
        pts = [(r[key], r["bits_per_character"], r["name"]) for r in report["rows"]
               if r.get(key)]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="tab:blue")
        for x, y, n in pts:
            ax.annotate(n, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test bits per character (lower is better)")
        with atomic_path(os.path.join(out, name)) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        files[name[:-4]] = name
    return files


def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    if key in ("num_params", "size_bytes"):
        return f"{int(v):,}"
    if key in ("bits_per_character", "bpc_vs_teacher", "size_vs_teacher"):
        return f"{v:.4f}"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def _verdict(report: Dict) -> str:
    f, t = report["final"], report["teacher"]
    return (f"**Final: {f['name']}**: test {f['bits_per_character']:.4f} bits per character "
            f"({100 * (f['bpc_vs_teacher'] - 1):+.1f}% vs the teacher's "
            f"{t['bits_per_character']:.4f}) at {f['size_vs_teacher']:.3f} of its size "
            f"({f['size_bytes']:,} vs {t['size_bytes']:,} bytes)." + _against_file(report))


def _against_file(report: Dict) -> str:
    """The final file against the teacher's float TFLite file (size, tokens/s, TTFT)."""
    f = report["final"]
    t = next((r for r in report["rows"] if r["stage"] == "teacher"
              and r.get("format") not in (None, "keras")), None)
    if t is None or f.get("format") in (None, "keras"):
        return ""
    return (f" Against the teacher's {t['format']} file: {f['size_bytes'] / t['size_bytes']:.3f}"
            f" of its {t['size_bytes']:,} bytes, decode {_fmt('tokens_per_s', f['tokens_per_s'])}"
            f" vs {_fmt('tokens_per_s', t['tokens_per_s'])} tokens/s, time to first token "
            f"{_fmt('ttft_ms', f['ttft_ms'])} vs {_fmt('ttft_ms', t['ttft_ms'])} ms.")


def _samples(report: Dict) -> List[str]:
    rows = [r for r in report["rows"] if "_continuations" in r]
    lines = ["## Greedy continuations (test prompts of "
             f"{PROMPT_TOKENS} tokens, {NEW_TOKENS} new tokens)"]
    for i, prompt in enumerate(rows[0]["_prompts"]):
        lines += ["", f"### Prompt {i + 1}", "", "```", prompt, "```", "",
                  "| model | continuation |", "|---|---|"]
        lines += [f"| {r['name']} | `{_cell(r['_continuations'][i])}` |" for r in rows]
    return lines


def _cell(text: str) -> str:
    return text.replace("\n", "⏎").replace("|", "\\|").replace("`", "'")


def write_lm_report(paths: Dict[str, str], final_stage: str, out: str, command: str,
                    stages: Optional[Dict] = None) -> Dict:
    """Collects, plots and writes report.md/.html, summary.json and model_card.md."""
    report = collect(paths, final_stage)
    plots = _plots(report, out)
    rows = report["rows"]
    table = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    table += ["| " + " | ".join(_fmt(k, r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    name = read_json(os.path.join(paths["teacher"], METRICS_FILE))["data"]["name"]
    md = [f"# Language-model pipeline report: {name}", "", f"Command: `{command}`", "",
          _verdict(report), "", "Bits per character on the test split; size is the weights' "
          "raw bytes (Keras rows: float32; a pruned or QAT stage's TFLite file as compress.py "
          "measured it is in its own column) or the exported file; tokens/s and time to first token "
          f"(TTFT, {PROMPT_TOKENS}-token prompt) measured here, batch 1 (Keras: key/value "
          "cache where the model has one, else recomputing the window).", "", *table, "",
          "Sources: " + ", ".join(sorted({os.path.relpath(r["source"], out) for r in rows})),
          ""]
    md += [f"![{k}]({v})" for k, v in plots.items()] + [""] + _samples(report)
    write_text(os.path.join(out, "report.md"), "\n".join(md) + "\n")
    samples = "".join(
        f"<h3>Prompt {i + 1}</h3><pre>{html.escape(p)}</pre><table border=1>" +
        "".join(f"<tr><td>{html.escape(r['name'])}</td><td><pre>"
                f"{html.escape(r['_continuations'][i])}</pre></td></tr>"
                for r in rows if "_continuations" in r) + "</table>"
        for i, p in enumerate(rows[0]["_prompts"]))
    page = report_page("slm_tf LM report", f"Language-model pipeline report: {name}", command,
                       _verdict(report), COLUMNS, rows, _fmt, plots_html(plots) + samples)
    write_text(os.path.join(out, "report.html"), page + "\n")
    public = lambda r: {k: v for k, v in r.items() if not k.startswith("_")}
    final = public(report["final"])
    final["teacher_bits_per_character"] = report["teacher"]["bits_per_character"]
    final["teacher_size_bytes"] = report["teacher"]["size_bytes"]
    summary = {"task": "lm", "rows": [public(r) for r in rows], "final": final,
               "stages": stages or {}, "command": command, "plots": plots}
    write_json(os.path.join(out, "summary.json"), summary)
    write_text(os.path.join(out, "model_card.md"), model_card(report, paths, command))
    return summary


def model_card(report: Dict, paths: Dict[str, str], command: str) -> str:
    """Intended use, data, metrics, limits and provenance of the final language model."""
    f, t = report["final"], report["teacher"]
    final_dir = paths.get(f["stage"]) or paths[[s for s in MODEL_STAGES if s in paths][-1]]
    cfg = read_json(os.path.join(final_dir, "config.json"))
    data = read_json(os.path.join(paths["teacher"], METRICS_FILE))["data"]
    return f"""# Model card: {data['name']} language model ({f['name']})

## Intended use
Next-token prediction and short continuations (autocomplete, drafting) in the domain of the
`{data['name']}` corpus, on device (LiteRT) or server. It imitates its training text: do not
use its output as fact, and review generated text before it reaches people.

## Model
A {cfg['model']['model']} with {f.get('num_params') or '-'} parameters
({f['size_bytes']:,} bytes, {f['size_vs_teacher']:.3f} of the teacher), context
{cfg['data']['max_seq_len']} tokens, tokenizer `{cfg['tokenizer']['tokenizer']}`; distilled
token by token from a teacher with {t['num_params']:,} parameters.

## Data
`{data['name']}`: splits {data.get('splits')}. Licence: that of the corpus you trained on.

## Metrics (test split)
{f['bits_per_character']:.4f} bits per character (teacher {t['bits_per_character']:.4f});
decode {_fmt('tokens_per_s', f.get('tokens_per_s'))} tokens/s and time to first token
{_fmt('ttft_ms', f.get('ttft_ms'))} ms for a {PROMPT_TOKENS}-token prompt on this machine.

## Known limits
- Generates only text like its corpus; other domains score far worse.
- Continuations beyond the context of {cfg['data']['max_seq_len']} tokens forget the start.
- Quantized files can pick a different next token than the float model on near-ties.

## Provenance
Produced by: `{command}`. Stage configs: `config.json` in each stage directory.
"""
