"""The named-entity pipeline's report hooks (``REPORT_TASKS["ner"]``): entity F1 as the
headline, per-type F1 of the teacher and of the final file, the final file's confusion of
entity types, and a model card for a tagger. Every number is read from the stages'
``metrics.json`` and the export's ``benchmark.json``."""
import os
from typing import Dict, List

import numpy as np

from slm_tf.io_utils import read_json
from slm_tf.pipeline.report import REPORT_TASKS, ReportTask


def per_type_lines(teacher: Dict, final: Dict) -> List[str]:
    """Markdown: entity F1 per type of the teacher (Keras) and the final file."""
    rec = final["_record"]
    lines = ["## Entity F1 per type (test split)", "",
             f"| type | teacher | {final['name']} | support |", "|---|---|---|---|"]
    for t, v in teacher["per_type"].items():
        lines.append(f"| {t} | {v['f1']:.4f} | {rec['per_type'].get(t, 0.0):.4f} | "
                     f"{v['support']} |")
    return lines + [""]


def confusion_lines(final: Dict) -> List[str]:
    """Markdown: gold type (rows) x predicted type (columns) over spans of the final file;
    ``O`` is a missed gold span (column) or a spurious predicted one (row)."""
    conf = final["_record"]["type_confusion"]
    labels = conf["labels"]
    lines = [f"## Confusion of entity types: {final['name']}", "",
             "Rows: gold type; columns: the type predicted for exactly that span (`O`: no "
             "entity there). The `O` row counts predicted spans that match no gold span.", "",
             "| gold \\ predicted | " + " | ".join(labels) + " |",
             "|" + "---|" * (len(labels) + 1)]
    lines += [f"| {g} | " + " | ".join(str(c) for c in row) + " |"
              for g, row in zip(labels, conf["matrix"])]
    return lines + [""]


def _ner_plots(report: Dict, save) -> None:
    from slm_tf.plotting import pyplot
    plt = pyplot()
    final, teacher = report["final"], report["teacher"]
    rec = final["_record"]
    types = list(teacher["per_type"])
    t = [teacher["per_type"][k]["f1"] for k in types]
    s = [rec["per_type"].get(k, 0.0) for k in types]
    x = np.arange(len(types))
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(types) + 2), 4))
    ax.bar(x - 0.2, t, 0.4, label="teacher")
    ax.bar(x + 0.2, s, 0.4, label=final["name"])
    ax.set_xticks(x)
    ax.set_xticklabels(types, rotation=30, ha="right")
    ax.set_ylabel("entity F1")
    ax.set_ylim(0, 1)
    ax.legend()
    save(fig, "per_type_f1.png")
    conf = rec["type_confusion"]
    m = np.asarray(conf["matrix"], float)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(m / np.maximum(m.sum(1, keepdims=True), 1), cmap="Blues")
    ax.set_xticks(range(len(conf["labels"])))
    ax.set_xticklabels(conf["labels"], rotation=30, ha="right")
    ax.set_yticks(range(len(conf["labels"])))
    ax.set_yticklabels(conf["labels"])
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted type (same span)")
    ax.set_ylabel("gold type")
    ax.set_title(f"confusion of types (row-normalized): {final['name']}")
    save(fig, "type_confusion.png")
    report["extra_markdown"] = per_type_lines(teacher, final) + confusion_lines(final)
    report["extra_summary"] = {
        "per_type_f1": {"teacher": {k: v["f1"] for k, v in teacher["per_type"].items()},
                        "final": dict(rec["per_type"])},
        "type_confusion": conf}


def ner_model_card(report: Dict, paths: Dict[str, str], final_stage: str, command: str) -> str:
    """Intended use, data, per-type scores, limits and provenance of the final tagger."""
    f, t = report["final"], report["teacher"]
    rec = f["_record"]
    run_cfg = read_json(os.path.join(paths[final_stage], "config.json"))
    data = t["data"]
    rows = "\n".join(f"| {k} | {rec['per_type'].get(k, 0.0):.3f} | {v['f1']:.3f} | "
                     f"{v['support']} |" for k, v in t["per_type"].items())
    return f"""# Model card: {data['name']} entity tagger ({f['name']})

## Intended use
Finds {', '.join(data['types'])} entities in text like `{data['name']}`'s and returns their
exact character spans, on device (LiteRT) or server. Not for other entity types or domains
without re-training; not for decisions about people without human review.

## Model
`{f['format']}` export of the `{final_stage}` stage: a {run_cfg['model']['model']} tagger
(CRF: {run_cfg['model'].get('crf', False)}) with {f['num_params']:,} parameters,
{f['file_bytes']:,} bytes, input `ids` int32 [1, {run_cfg['data']['max_seq_len']}] (longer
sentences are truncated), tokenizer `{run_cfg['tokenizer']['tokenizer']}`, tags
{data['scheme']}. The bundle's `bundle.json` documents tokenization, decoding and spans.
Distilled from a teacher with {t['num_params']:,} parameters.

## Data
`{data['name']}` ({', '.join(data.get('files', []))}); split sizes {data.get('sizes', {})};
sentences skipped while reading: {data.get('skipped_rows_total', 0)}.

## Metrics (test split, {t['num_examples']} sentences, exact span and type)
entity F1 {f['accuracy']:.4f} (teacher {t['entity_f1']:.4f}), precision
{rec['precision']:.4f}, recall {rec['recall']:.4f}; tag agreement with the float Keras
student {f['agreement']:.4f}; p50 latency {f['p50_ms_1t']:.3f} ms on one thread of this
benchmark machine plus {rec.get('decode_p50_ms') or 0:.2f} ms of decoding for 50 units.

| type | F1 (this model) | F1 (teacher) | support |
|---|---|---|---|
{rows}

## Known limits
- Trained on `{data['name']}` only; other domains or writing styles will score lower.
- Quantized files can disagree with the float model on near-ties (agreement above).

## Provenance
Produced by: `{command}`. Stage configs: `config.json` in each stage directory.
"""


REPORT_TASKS.register("ner")(ReportTask("entity_f1", "macro_f1", ("entity F1", "macro-F1 of types"),
                                        _ner_plots, ner_model_card))
