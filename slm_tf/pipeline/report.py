"""The pipeline's report: every number is read from a stage's own ``metrics.json`` or
``benchmark.json`` (each row names its source file), never typed in.

Writes ``summary.json``, ``report.md``, ``report.html``, ``model_card.md`` and the plots (PNG).
"""
import dataclasses
import html
import os
from typing import Callable, Dict, List, Optional

import numpy as np

from slm_tf.export.benchmark import RESULT_FILE
from slm_tf.io_utils import atomic_path, read_json, write_json, write_text
from slm_tf.pipeline.html_page import plots_html, report_page
from slm_tf.registry import Registry
from slm_tf.train.artifacts import CONFIG_FILE, METRICS_FILE, MODEL_FILE
from slm_tf.trust.evaluate import summary_lines
from slm_tf.trust.serving import TRUST_KEY

MODEL_STAGES = ("teacher", "student", "distilled", "pruned", "qat")
FINAL_TOLERANCE = 0.005  # the final model may give up this much accuracy for a smaller file
COLUMNS = [("name", "model"), ("accuracy", "accuracy"), ("macro_f1", "macro-F1"),
           ("num_params", "params"), ("file_bytes", "file bytes"), ("p50_ms_1t", "p50 ms"),
           ("p95_ms_1t", "p95 ms"), ("speedup_vs_teacher", "speed-up"),
           ("compression_vs_teacher", "compression"), ("ece_before", "ECE before T"),
           ("ece_after", "ECE after T")]


@dataclasses.dataclass(frozen=True)
class ReportTask:
    """What differs between tasks in the report. Rows keep the keys ``accuracy`` (the
    headline) and ``macro_f1`` (the second score) whatever they measure, so picking the final
    file, the stage costs and the Pareto plots are shared; ``headline``/``second`` name the
    keys of ``metrics.json`` and ``benchmark.json`` they are read from, ``labels`` their
    column titles. ``plots(report, save)`` draws the task's own figures of the final file
    (``save(fig, name)``) and may add ``report["extra_markdown"]`` (lines after the figures)
    and ``report["extra_summary"]`` (keys of summary.json); ``card(report, paths,
    final_stage, command)`` is the model card."""
    headline: str
    second: str
    labels: tuple
    plots: Callable
    card: Callable


# Report hooks by the pipeline's task (slm_tf.pipeline.ner_report adds "ner").
REPORT_TASKS: Registry[ReportTask] = Registry("report task")


def _keras_row(stage: str, run_dir: str, spec: Optional[ReportTask] = None) -> Dict:
    spec = spec or REPORT_TASKS.get("classification")
    path = os.path.join(run_dir, METRICS_FILE)
    m = read_json(path)
    return {"name": f"{stage} (Keras)", "stage": stage, "format": "keras",
            "accuracy": m[spec.headline], "macro_f1": m.get(spec.second),
            "num_params": m["num_params"],
            "file_bytes": os.path.getsize(os.path.join(run_dir, MODEL_FILE)),
            "p50_ms_1t": None, "p95_ms_1t": None, "ece": m.get("ece"), "source": path,
            "validation_accuracy": m.get("validation", {}).get("accuracy"),
            **_ece_pair(m.get(TRUST_KEY, {}).get("calibration", {}))}


def _input_stage(paths: Dict[str, str], stage: str) -> Optional[str]:
    """The stage a compression stage started from (its ``config.json``), else None."""
    config = os.path.join(paths[stage], CONFIG_FILE)
    if not os.path.exists(config):
        return None
    source = read_json(config).get("compress", {}).get("run_dir")
    return next((s for s, p in paths.items() if source and s in MODEL_STAGES
                 and os.path.realpath(p) == os.path.realpath(source)), None)


def _compression_start(report: Dict) -> Optional[str]:
    """The stage the first compression stage started from, or None without one."""
    return next((r["input_stage"] for r in report["rows"] if r.get("input_stage")), None)


def _lineage(report: Dict, teacher: Dict) -> str:
    """Model card: whether the shipped student was distilled (``--compress_from``)."""
    about = f"a teacher with {teacher['num_params']:,} parameters (test accuracy " \
            f"{teacher['accuracy']:.4f})"
    if _compression_start(report) == "student":
        return (f"Trained on the labels alone: its distillation from {about} was no better on "
                "validation.")
    return f"Distilled from {about}."


def compress_start_line(report: Dict) -> str:
    """Which student the compression stages started from and both validation accuracies
    (``--compress_from``), or "" when they started from the distilled one as listed."""
    start = _compression_start(report)
    if start in (None, "distilled"):
        return ""
    val = {r["stage"]: r.get("validation_accuracy") for r in report["rows"]
           if r["format"] == "keras"}
    return (f"The compression stages started from the {start} model: validation accuracy "
            f"{_fmt('accuracy', val.get('student'))} (labels only) vs "
            f"{_fmt('accuracy', val.get('distilled'))} (distilled); see --compress_from.")


def _ece_pair(calibration: Dict) -> Dict:
    """Test ECE before and after temperature scaling, as the stage or benchmark measured it."""
    return {k: calibration.get(k) for k in ("ece_before", "ece_after")}


def _export_rows(stage: str, export_dir: str, num_params: int,
                 spec: Optional[ReportTask] = None) -> List[Dict]:
    spec = spec or REPORT_TASKS.get("classification")
    path = os.path.join(export_dir, RESULT_FILE)
    return [{"name": f"{stage} {r['format']}", "stage": stage, "format": r["format"],
             "accuracy": r[spec.headline], "macro_f1": r.get(spec.second),
             "num_params": num_params,
             "file_bytes": r["file_bytes"], "p50_ms_1t": r["p50_ms_1t"],
             "p95_ms_1t": r["p95_ms_1t"], "p50_ms_2t": r["p50_ms_2t"],
             "agreement": r["agreement"], "parity_ok": r["parity_ok"], "ece": r.get("ece"),
             **_ece_pair(r.get("calibration", {})), "source": path, "_record": r}
            for r in read_json(path) if r["format"] != "keras"]


def _baseline_row(paths: Dict[str, str], final_stage: str) -> Optional[Dict]:
    """The classical baseline as the stages measured it (the final stage's run first)."""
    for stage in [final_stage, *MODEL_STAGES]:
        if stage not in paths:
            continue
        path = os.path.join(paths[stage], METRICS_FILE)
        base = read_json(path).get("baseline")
        if base:
            return {"name": "baseline (TF-IDF + linear)", "stage": "baseline",
                    "format": "scikit-learn", "accuracy": base["accuracy"],
                    "macro_f1": base["macro_f1"], "num_params": None, "file_bytes": None,
                    "p50_ms_1t": None, "p95_ms_1t": None, "source": path,
                    "description": base["name"]}
    return None


def collect(paths: Dict[str, str], final_stage: str, task: str = "classification") -> Dict:
    """Rows of every stage present in ``paths`` (stage name -> directory)."""
    spec = REPORT_TASKS.get(task)
    rows = [_keras_row(s, paths[s], spec) for s in MODEL_STAGES if s in paths]
    by_stage = {r["stage"]: r for r in rows}
    for r in rows:
        r["input_stage"] = _input_stage(paths, r["stage"])
    teacher_ref = _export_rows("teacher", paths["teacher_export"],
                               by_stage["teacher"]["num_params"], spec)[0]
    exported = _export_rows("final", paths["export"], by_stage[final_stage]["num_params"],
                            spec)
    baseline = _baseline_row(paths, final_stage)
    rows = ([baseline] if baseline else []) + rows[:1] + [teacher_ref] + rows[1:] + exported
    for r in rows:
        r["speedup_vs_teacher"] = (teacher_ref["p50_ms_1t"] / r["p50_ms_1t"]
                                   if r["p50_ms_1t"] else None)
        r["compression_vs_teacher"] = (teacher_ref["file_bytes"] / r["file_bytes"]
                                       if r["file_bytes"] else None)
    ok = [r for r in exported if r["parity_ok"]] or exported
    best = max(r["accuracy"] for r in ok)
    final = min((r for r in ok if r["accuracy"] >= best - FINAL_TOLERANCE),
                key=lambda r: r["file_bytes"])
    teacher = read_json(os.path.join(paths["teacher"], METRICS_FILE))
    teacher["accuracy"] = teacher[spec.headline]  # the headline, whatever the task
    return {"rows": rows, "final": final, "teacher": teacher, "teacher_row": by_stage["teacher"],
            "teacher_ref": teacher_ref, "baseline": baseline, "spec": spec}


def pareto_front(points: List[tuple]) -> List[int]:
    """Indices of the points (cost, accuracy) no other point beats on both (lower cost,
    higher accuracy), sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _plots(report: Dict, out: str) -> Dict[str, str]:
    from slm_tf.plotting import pyplot
    plt = pyplot()
    files = {}
    rows = report["rows"]
    headline = report["spec"].labels[0]

    def save(fig, name):
        with atomic_path(os.path.join(out, name)) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        files[name[:-4]] = name

    for key, label, name in (("file_bytes", "file size (bytes, log)", "accuracy_vs_size.png"),
                             ("p50_ms_1t", "p50 latency, batch 1, 1 thread (ms, log)",
                              "accuracy_vs_latency.png")):
        pts = [(r[key], r["accuracy"], r["name"]) for r in rows if r.get(key)]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="tab:blue")
        for x, y, n in pts:
            ax.annotate(n, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = [pts[i] for i in pareto_front([(p[0], p[1]) for p in pts])]
        ax.plot([p[0] for p in front], [p[1] for p in front], "r--o", label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"test {headline}")
        ax.legend()
        save(fig, name)
    report["spec"].plots(report, save)
    return files


def _classification_plots(report: Dict, save) -> None:
    """Confusion matrix, per-class F1 of teacher vs final, reliability diagram."""
    from slm_tf.plotting import pyplot
    plt = pyplot()
    final = report["final"]
    rec = final["_record"]
    cm = np.asarray(rec["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion matrix (row-normalized): {final['name']}")
    save(fig, "confusion_matrix.png")
    names = list(rec["per_class_f1"])
    t = np.array([report["teacher"]["per_class"][n]["f1"] for n in names])
    s = np.array([rec["per_class_f1"][n] for n in names])
    order = np.argsort(t)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(t[order], "o-", ms=3, label="teacher")
    ax.plot(s[order], "o-", ms=3, label=final["name"])
    ax.set_xlabel("class (sorted by teacher F1)")
    ax.set_ylabel("F1")
    ax.legend()
    save(fig, "per_class_f1.png")
    bins = rec["reliability"]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    ax.bar([b["lo"] for b in bins], [b["accuracy"] for b in bins],
           width=[b["hi"] - b["lo"] for b in bins], align="edge", alpha=0.6, label="accuracy")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "ro", ms=3)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability: {final['name']}, ECE {rec['ece']:.4f}")
    ax.legend()
    save(fig, "reliability.png")


def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    if key in ("accuracy", "macro_f1", "ece_before", "ece_after"):
        return f"{v:.4f}"
    if key in ("speedup_vs_teacher", "compression_vs_teacher"):
        return f"{v:.1f}x"
    if isinstance(v, float):
        return f"{v:.3f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


# Each stage's knob: what to turn when the stage costs accuracy against the one before it.
STAGE_KNOBS = {
    "student": "use a larger student (--student_recipe: wider model, longer --max_seq_len, "
               "more epochs)",
    "distilled": "tune distillation: --temperature, --alpha or --augment_copies",
    "pruned": "lower --prune or raise --prune_epochs",
    "qat": "raise --qat_epochs (or --noqat)",
    "final": "export another format (--export_formats=tflite_dynamic,tflite_float) or keep "
             "--qat on so int8 keeps the QAT ranges",
}


def stage_costs(report: Dict) -> List[Dict]:
    """Accuracy of each stage against the stage before it (the teacher for the labels-only
    student, the labels-only student for the distilled one, then each stage's input, and the
    recommended file against the Keras model it was exported from), in points, with the knob
    that trades a loss back."""
    keras_rows = [r for r in report["rows"] if r["format"] == "keras"]
    by_stage = {r["stage"]: r for r in keras_rows}
    chain = [r["stage"] for r in keras_rows]
    out = []
    for prev, stage in zip(chain, chain[1:]):  # teacher, student, distilled, pruned, qat
        prev = by_stage[stage].get("input_stage") or prev  # e.g. QAT of the labels-only one
        out.append(_cost(stage, by_stage[stage], prev, by_stage[prev]))
    out.append(_cost("final", report["final"], chain[-1], by_stage[chain[-1]]))
    return out


def _cost(stage: str, row: Dict, prev: str, prev_row: Dict) -> Dict:
    delta = (row["accuracy"] - prev_row["accuracy"]) * 100
    text = f"{stage}: {delta:+.2f} pts vs {prev}"
    if delta < 0:
        text += f"; {STAGE_KNOBS[stage]}"
    return {"stage": stage, "name": row["name"], "previous": prev, "points": delta,
            "knob": STAGE_KNOBS[stage] if delta < 0 else None, "text": text}


def earlier_stage_gap(report: Dict, margin: float) -> Optional[Dict]:
    """The best student stage (labels-only, distilled, pruned, QAT; not the teacher) when the
    recommended file is more than ``margin`` accuracy below it, else None."""
    students = [r for r in report["rows"] if r["format"] == "keras" and r["stage"] != "teacher"]
    if not students:
        return None
    best = max(students, key=lambda r: r["accuracy"])
    gap = best["accuracy"] - report["final"]["accuracy"]
    if gap <= margin:
        return None
    stages = [c["stage"] for c in report["costs"]]
    after = report["costs"][stages.index(best["stage"]) + 1:]  # what lost the accuracy
    worst = min(after, key=lambda c: c["points"])
    return {"stage": best["stage"], "accuracy": best["accuracy"], "points": gap * 100,
            "margin_points": margin * 100, "biggest_loss": worst["text"]}


def _verdict(report: Dict) -> str:
    f, t = report["final"], report["teacher"]
    label = report["spec"].labels[0] if "spec" in report else "accuracy"
    # A teacher that learned nothing (entity F1 0 after a short run) has no ratio to give.
    share = f"{f['accuracy'] / t['accuracy']:.1%} of" if t["accuracy"] else "against"
    return (f"Recommended: **{f['name']}** — test {label} {f['accuracy']:.4f} "
            f"({share} the teacher's {t['accuracy']:.4f}), "
            f"{f['file_bytes']:,} bytes ({f['compression_vs_teacher']:.0f}x smaller than the "
            f"teacher's float TFLite file), p50 {f['p50_ms_1t']:.3f} ms per query on one thread "
            f"({f['speedup_vs_teacher']:.0f}x faster). It is the smallest exported file that "
            f"passes its parity floor within {FINAL_TOLERANCE:.1%} of the best exported "
            "accuracy." + _gap_verdict(report) + _baseline_verdict(report))


def _gap_verdict(report: Dict) -> str:
    g = report.get("below_earlier_stage")
    if not g:
        return ""
    return (f" **Warning: it is {g['points']:.2f} points below the {g['stage']} model "
            f"({g['accuracy']:.4f}), more than the {g['margin_points']:.1f}-point margin "
            f"(--max_stage_drop)**: every exported file comes from the last stage, so fix the "
            f"stage that lost most ({g['biggest_loss']}) and rerun, or ship the {g['stage']} "
            "run (scripts/export.py).")


def _baseline_verdict(report: Dict) -> str:
    b, f = report.get("baseline"), report["final"]
    if not b:
        return ""
    gap = f["accuracy"] - b["accuracy"]
    if gap >= 0:
        return (f" It beats the classical baseline ({b['description']}: {b['accuracy']:.4f}) "
                f"by {gap * 100:.2f} points.")
    return (f" **Warning: it is {-gap * 100:.2f} points below the classical baseline** "
            f"({b['description']}: {b['accuracy']:.4f}) on the same test split: prefer the "
            "baseline, or try a larger student, a longer --max_seq_len or more epochs.")


def write_report(paths: Dict[str, str], final_stage: str, out: str, command: str,
                 stages: Optional[Dict] = None, max_stage_drop: float = 0.01,
                 task: str = "classification") -> Dict:
    """Collects, plots and writes every report file into ``out``; returns the summary.
    ``max_stage_drop``: the accuracy the recommended file may lose to an earlier student
    stage before the report warns (see ``earlier_stage_gap``); ``task`` picks the
    ``REPORT_TASKS`` hooks (headline metric, figures, model card)."""
    report = collect(paths, final_stage, task)
    spec = report["spec"]
    report["costs"] = stage_costs(report)
    report["below_earlier_stage"] = earlier_stage_gap(report, max_stage_drop)
    plots = _plots(report, out)
    rows = report["rows"]
    titles = {"accuracy": spec.labels[0], "macro_f1": spec.labels[1]}
    columns = [(k, titles.get(k, h)) for k, h in COLUMNS]
    table = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    table += ["| " + " | ".join(_fmt(k, r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    t = report["teacher"]
    start = compress_start_line(report)
    md = [f"# Pipeline report: {t['data']['name']}", "", f"Command: `{command}`", "",
          _verdict(report), "", "All rows are on the same test split "
          f"({t['num_examples']} examples). Speed-up and compression are against the teacher's "
          "float TFLite file; latency is batch 1 through LiteRT/onnxruntime.", "", *table, "",
          "Sources: " + ", ".join(sorted({os.path.relpath(r['source'], out) for r in rows})), "",
          "## What each stage cost", "", *[f"- {c['text']}" for c in report["costs"]], "",
          *([start, ""] if start else [])]
    pretrained = pretraining(paths)
    pretraining_lines = pretraining_section(pretrained)
    md += pretraining_lines
    md += [f"![{k}]({v})" for k, v in plots.items()]
    md += report.get("extra_markdown", [])
    trust = trust_section(paths, out)
    auto = automatic_choices_section(paths)
    md += ["", *trust, *auto]
    write_text(os.path.join(out, "report.md"), "\n".join(md) + "\n")
    page = report_page(
        "slm_tf report", f"Pipeline report: {t['data']['name']}", command, _verdict(report),
        columns, rows, _fmt,
        "<h2>What each stage cost</h2><ul>" +
        "".join(f"<li>{html.escape(c['text'])}</li>" for c in report["costs"]) + "</ul>" +
        (f"<p>{html.escape(start)}</p>" if start else "") +
        plots_html(plots) +
        (f"<pre>{html.escape(chr(10).join(report['extra_markdown']))}</pre>"
         if report.get("extra_markdown") else "") +
        f"<pre>{html.escape(chr(10).join(pretraining_lines + trust + auto))}</pre>")
    write_text(os.path.join(out, "report.html"), page + "\n")
    public = lambda r: {k: v for k, v in r.items() if not k.startswith("_")}
    final = public(report["final"])
    final["teacher_accuracy"] = t["accuracy"]
    if report.get("baseline"):
        final["baseline_accuracy"] = report["baseline"]["accuracy"]
    final["below_earlier_stage"] = report["below_earlier_stage"]
    summary = {"rows": [public(r) for r in rows], "final": final, "stages": stages or {},
               "stage_costs": report["costs"], "command": command, "plots": plots,
               "task": task, "metric_labels": list(spec.labels),
               **({"pretrain": pretrained} if pretrained else {}),
               **report.get("extra_summary", {})}
    write_json(os.path.join(out, "summary.json"), summary)
    write_text(os.path.join(out, "model_card.md"), spec.card(report, paths, final_stage,
                                                            command))
    return summary


def pretraining(paths: Dict[str, str]) -> Optional[Dict]:
    """What the pretrain stage did (None without it): texts, epochs, masked-token accuracy
    (test and validation) and the stages that started from it."""
    if "pretrain" not in paths:
        return None
    m = read_json(os.path.join(paths["pretrain"], METRICS_FILE))
    starts = [s for s in ("student", "distilled") if s in paths and read_json(os.path.join(
        paths[s], CONFIG_FILE)).get("finetune", {}).get("init_from") == paths["pretrain"]]
    data = m["data"]  # a labelled source's split sizes, or a corpus's (a tagger's sentences)
    train_texts = (data["sizes"]["train"] if "sizes" in data
                   else data["splits"]["train"]["documents"])
    return {"train_texts": train_texts, **m.get("pretrain", {}),
            "epochs": m["epochs_run"], "train_seconds": m["train_seconds"],
            "masked_token_accuracy": m["accuracy"],
            "validation_masked_token_accuracy": m["validation"]["accuracy"],
            "started_from_it": starts}


def pretraining_section(p: Optional[Dict]) -> List[str]:
    """Markdown lines on the pretrain stage (``pretraining``'s dict; none without it)."""
    if not p:
        return []
    unlabeled = (f" plus {p['unlabeled_texts']:,} unlabeled texts from "
                 f"{p['unlabeled_data']}" if "unlabeled_texts" in p else "")
    return ["## Pretraining", "",
            f"Masked-language modelling of the student's architecture on "
            f"{p['train_texts']:,} training texts{unlabeled}, {p['epochs']} epochs in "
            f"{p['train_seconds'] / 60:.1f} min: masked-token accuracy "
            f"{p['masked_token_accuracy']:.4f} on the test split "
            f"({p['validation_masked_token_accuracy']:.4f} on validation). Started from it: "
            f"{', '.join(p['started_from_it']) or 'no stage'}.", ""]


def trust_section(paths: Dict[str, str], out: str) -> List[str]:
    """Markdown: each stage's temperature, ECE before/after, abstention costs and plots."""
    lines = ["## Calibration and abstention (per stage)", *shipped_abstention_lines(paths)]
    for stage in MODEL_STAGES:
        if stage not in paths:
            continue
        m = read_json(os.path.join(paths[stage], METRICS_FILE))
        if TRUST_KEY not in m:
            continue
        lines += ["", f"### {stage}", "", *summary_lines(m[TRUST_KEY])]
        lines += [f"![{stage} {k}]({os.path.relpath(os.path.join(paths[stage], v), out)})"
                  for k, v in m[TRUST_KEY].get("plots", {}).items()]
    return lines


def automatic_choices_section(paths: Dict[str, str]) -> List[str]:
    """Markdown: the training split's profile and every automatic choice (with its reason and
    whether the user's own setting won) of the teacher and the student (``data_profile.json``),
    and the pipeline's own (compression). Empty when no stage chose anything."""
    from slm_tf.autorecipe import PROFILE_FILE
    lines = []
    for stage in ("teacher", "student"):
        path = os.path.join(paths.get(stage, ""), PROFILE_FILE)
        if stage not in paths or not os.path.exists(path):
            continue
        record = read_json(path)
        p = record["profile"]
        if not lines:
            lines = ["", "## Automatic choices", "", "The training split: "
                     f"{p['num_examples']} texts, {p['num_classes']} classes (largest/smallest "
                     f"{p['imbalance_ratio']:.1f}), words per text p50/p95/p99 "
                     f"{p['words_p50']:.0f}/{p['words_p95']:.0f}/{p['words_p99']:.0f}, "
                     f"{p['cjk_share']:.0%} CJK characters, {p['duplicate_texts']} duplicate "
                     f"and {p['near_empty_texts']} near-empty texts. Every flag you set wins "
                     "(applied: no)."]
        choices = {**record["choices"], **record.get("pipeline_choices", {})}
        lines += ["", f"### {stage}", "", "| flag | value | applied | why |", "|---|---|---|---|"]
        lines += [f"| --{k} | {_flag_value(c['value'])} | {'yes' if c['applied'] else 'no'} | "
                  f"{c['reason']} |" for k, c in choices.items()]
    return lines


def _flag_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def shipped_abstention_lines(paths: Dict[str, str]) -> List[str]:
    """Markdown: what the exported files' own in-graph ``abstain`` flag did on the test split,
    through their runtimes (benchmark.json), final student and teacher side by side."""
    rows = []
    for stage in ("export", "teacher_export"):
        path = os.path.join(paths.get(stage, ""), RESULT_FILE)
        if stage not in paths or not os.path.exists(path):
            continue
        for r in read_json(path):
            a = r.get("abstention")
            if a and r["format"] != "keras":
                rows.append(f"| {'final' if stage == 'export' else 'teacher'} {r['format']} | "
                            f"{a['method']} | {a['oos_recall']:.4f} | {a['oos_precision']:.4f} | "
                            f"{a['in_scope_accuracy']:.4f} | "
                            f"{a['in_scope_accuracy_without_abstention']:.4f} | "
                            f"{a['accuracy_cost_points']:.2f} | {a['auroc']:.4f} | "
                            f"{a['fpr_at_95_in_scope_recall']:.4f} |")
    if not rows:
        return []
    return ["", "What abstaining costs in the shipped files (their own `abstain` output on the "
            "test split, threshold chosen on validation):", "",
            "| file | method | OOS recall | OOS precision | in-scope acc. | without abstention |"
            " cost (points) | AUROC | FPR@95 |", "|---|---|---|---|---|---|---|---|---|", *rows]


def _card_ece(final: Dict) -> str:
    if final.get("ece_after") is None:
        return ""
    return (f"; measured on this file's own outputs in its runtime: {final['ece_before']:.4f} "
            f"before and {final['ece_after']:.4f} after temperature scaling")


def model_card(report: Dict, paths: Dict[str, str], final_stage: str, command: str) -> str:
    """Intended use, data and licence, per-class metrics, calibration, limits, provenance."""
    f, t = report["final"], report["teacher"]
    rec = f["_record"]
    run_cfg = read_json(os.path.join(paths[final_stage], "config.json"))
    data = t["data"]
    per_class = "\n".join(
        f"| {n} | {rec['per_class_f1'][n]:.3f} | {t['per_class'][n]['f1']:.3f} | "
        f"{t['per_class'][n]['support']} |" for n in rec["per_class_f1"])
    weakest = sorted(rec["per_class_f1"], key=rec["per_class_f1"].get)[:5]
    return f"""# Model card: {data['name']} text classifier ({f['name']})

## Intended use
Classifies a short text into one of {data['num_classes']} labels of the `{data['name']}`
task, on device (Android/edge, LiteRT) or server. Not for labels outside this set: the model
always picks one of its labels (no out-of-scope class unless the data has one), and is not meant
for decisions about people without human review.

## Model
`{f['format']}` export of the `{final_stage}` stage: a {run_cfg['model']['model']} student with
{f['num_params']:,} parameters, {f['file_bytes']:,} bytes, input `ids` int32
[1, {run_cfg['data']['max_seq_len']}] (longer texts are truncated), tokenizer
`{run_cfg['tokenizer']['tokenizer']}`. {_lineage(report, t)}

## Data
`{data['name']}`, licence {data.get('license') or 'the user data licence'};
{data.get('citation') or ''}. Split sizes: {data.get('sizes', {})}. Rows skipped while reading:
{data.get('skipped_rows_total', 0)}.

## Metrics (test split, {t['num_examples']} examples)
accuracy {f['accuracy']:.4f}, macro-F1 {f['macro_f1']:.4f} (teacher {t['accuracy']:.4f} /
{t['macro_f1']:.4f}); agreement with the float Keras student {f['agreement']:.4f}; p50 latency
{f['p50_ms_1t']:.3f} ms on one thread of this benchmark machine.

| label | F1 (this model) | F1 (teacher) | support |
|---|---|---|---|
{per_class}

## Calibration
Expected calibration error {rec['ece']:.4f} (15 equal-width bins; `reliability.png`){_card_ece(f)}.
Treat probabilities as scores unless ECE is small for your use.

## Known limits
- Weakest labels (lowest F1): {', '.join(weakest)}.
- Trained on `{data['name']}` only; other domains, languages or phrasing will score lower.
- Texts longer than {run_cfg['data']['max_seq_len'] - 2} tokens are truncated.
- Quantized files can disagree with the float model on near-ties (agreement above).

## Provenance
Produced by: `{command}`. Stage configs: `config.json` in each stage directory; numbers from
{os.path.relpath(f['source'], os.path.dirname(os.path.dirname(f['source'])))} and the stages'
`metrics.json`.
"""


REPORT_TASKS.register("classification")(ReportTask("accuracy", "macro_f1",
                                                   ("accuracy", "macro-F1"),
                                                   _classification_plots, model_card))
