"""The token-classification (named entity) exporter: the same files as a classifier's (TFLite
float/dynamic/fp16/int8, ONNX, SavedModel) on the graph ``ids[1, L] -> logits, probabilities
[1, L, tags]``, and an Android bundle whose ``bundle.json`` documents every step from text to
entity character spans.

A CRF's Viterbi decoding is the bundle's documented decoding step (its transition, start and
end scores sit in ``bundle.json`` under ``crf``) rather than part of the graph: the graph stays
the same per-token network in every format, and the int8 file's decoding runs on dequantized
float logits, so the path scores are not accumulated in 8 bits over the whole sentence.
"""
import os
import shutil
import tempfile
import time
from typing import Dict

import numpy as np
from absl import logging

from slm_tf.cli import print_table
from slm_tf.config import from_dict
from slm_tf.data.config import DataConfig
from slm_tf.export.benchmark import (BENCHMARKS, RESULT_FILE, TABLE_FILE, _cell,
                                     _compare_with_float, _measure_in_child)
from slm_tf.export.bundle import BUNDLE_DIR, LABELS_FILE, MODEL_FILE, SPEC_FILE, _STEPS, \
    tokenizer_spec
from slm_tf.export.parity import MIN_AGREEMENT
from slm_tf.export.run import (EXPORTERS, FORMATS, _Context, base_manifest, bundle_choice,
                               check_fresh, file_name, write_formats)
from slm_tf.export.tflite import signature_io, size_breakdown
from slm_tf.io_utils import atomic_path, write_json, write_text
from slm_tf.ner import offsets
from slm_tf.ner.metrics import entity_report
from slm_tf.ner.schemes import SCHEMES, detect_scheme
from slm_tf.ner.training import crf_layer, decode
from slm_tf.tasks.ner import encode_split, prepare_ner_data
from slm_tf.train.artifacts import MODEL_FILE as KERAS_FILE, load_run
from slm_tf.trust.serving import ServingHead

_UNITS = {
    "char": "Units: every code point of the original text that is not a space (category Cc, Cf or Z*) is one unit, its span [i, i + 1) in code points. Its tokens are its "
            "own normalized code point (steps above, spaces dropped); a unit whose "
            "normalization leaves nothing is skipped.",
    "wordpiece": "Units: the words of the original text - maximal runs of code points that are not a space "
                 "(category Cc, Cf or Z*), where every punctuation/symbol code point (category P* or S*) and "
                 "every CJK ideograph is a word of its own - each with its span [start, end) "
                 "in code points. Its tokens are the word pieces of the normalized word; a "
                 "unit whose normalization leaves nothing is skipped.",
}
_DECODING = [
    "ids = [cls_id] + the tokens of all units in order, cut to max_seq_len - 2 + [sep_id], "
    "padded with pad_id to max_seq_len. Unit u's tag position is 1 + the index of its first "
    "token; units whose position is >= max_seq_len - 1 are cut off and get no tag.",
    "Feed int32 [1, max_seq_len] to the input named in 'input'; read 'logits' float32 "
    "[1, max_seq_len, num_tags] (or 'probabilities', its softmax over tags). Tag i is line i "
    "(0-based) of labels.txt.",
    "Decode only the units' tag positions p_1 < ... < p_n (the chain skips the others). "
    "Without 'crf': tag(p) = argmax over tags of logits[p]. With 'crf' in bundle.json "
    "(transitions [from][to], start, end; float): Viterbi - score = start + logits[p_1]; for k = 2..n: "
    "back_k[y] = argmax_x(score[x] + transitions[x][y]), score[y] = max_x(score[x] + "
    "transitions[x][y]) + logits[p_k][y]; best last tag = argmax(score + end), then follow "
    "back_n ... back_2 to the first unit. Ties go to the lowest tag id.",
    "Tags -> entities (scheme in 'scheme'; begin prefixes B, inside I (BIO/BIOES) or M "
    "(BMES), end E, single S): walk the units' tags; O closes the open entity; a begin or "
    "single tag, or an inside/end tag whose type differs from the open entity's (or with no "
    "open entity) closes it and opens a new one of its own type; an end or single tag closes "
    "the entity after itself; an entity still open at the end closes there.",
    "An entity over units a..b is the character span [start of unit a, end of unit b) of the "
    "original text, end exclusive, in code points (Kotlin: offsetByCodePoints); its text is "
    "that substring.",
]


def _readme(spec: Dict) -> str:
    steps = spec["tokenizer"]["steps"] + [spec["units"]] + spec["decoding"]
    text = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    crf = " (with the CRF scores for Viterbi under `crf`)" if spec["crf"] else ""
    return (f"# {spec['name']}: Android bundle (named entities)\n\n"
            f"- `{MODEL_FILE}`: {spec['format']} TFLite token classifier, builtin ops only.\n"
            f"- `vocab.txt`, `{LABELS_FILE}` ({spec['num_labels']} tags, scheme "
            f"{spec['scheme']}), `{SPEC_FILE}`{crf}.\n\n"
            f"## Text -> entities\n\n{text}\n")


def write_ner_bundle(out_dir: str, tflite_path: str, fmt: str, run) -> str:
    """Writes ``<out_dir>/android/`` (model, vocabulary, tags, ``bundle.json`` with the CRF scores,
    documenting tokenization, decoding and tags -> character spans); returns its path."""
    path = os.path.join(out_dir, BUNDLE_DIR)
    with open(tflite_path, "rb") as f:
        io = signature_io(f.read())
    crf = crf_layer(run.model)
    tokenizer = run.tokenizer
    tok = tokenizer_spec(tokenizer, run.max_seq_len)
    # The classifier's id steps describe a [1, labels] output; NER's are in "decoding".
    tok["steps"] = _STEPS["common"] + _STEPS[tokenizer.kind]
    spec = {"name": run.model.name, "task": "ner", "format": fmt, "model_file": MODEL_FILE,
            "labels_file": LABELS_FILE, "num_labels": len(run.label_names),
            "scheme": detect_scheme(run.label_names),
            "scheme_prefixes": SCHEMES[detect_scheme(run.label_names)], "io": io,
            "tokenizer": tok, "units": _UNITS[tokenizer.kind], "decoding": _DECODING,
            "crf": None}
    if crf is not None:
        transitions, start, end = crf.params()
        spec["crf"] = {"transitions": transitions.tolist(), "start": start.tolist(),
                       "end": end.tolist()}
    with atomic_path(path, is_dir=True) as tmp:
        shutil.copyfile(tflite_path, os.path.join(tmp, MODEL_FILE))
        tokenizer.save(tmp)
        write_text(os.path.join(tmp, LABELS_FILE), "".join(f"{n}\n" for n in run.label_names))
        write_json(os.path.join(tmp, SPEC_FILE), spec)
        write_text(os.path.join(tmp, "README.md"), _readme(spec))
    return path


@EXPORTERS.register("ner")
def export_tagger(run, cfg, out: str) -> Dict:
    """A token classifier's files, its bundle and the manifest (``scheme``, ``crf``)."""
    # Per-token logits need no temperature or abstention head: the plain softmax head.
    ctx = _Context(run, cfg, ServingHead())
    files = write_formats(FORMATS, ctx, out)
    manifest = {**base_manifest(run, cfg, out, files), "scheme": detect_scheme(run.label_names),
                "crf": crf_layer(run.model) is not None}
    chosen = bundle_choice(cfg, files)
    if chosen:
        bundle = write_ner_bundle(out, os.path.join(out, file_name(chosen)), chosen, run)
        manifest["android"] = {"dir": os.path.basename(bundle), "format": chosen}
    return manifest


NER_COLUMNS = ("format", "file_bytes", "entity_f1", "f1_delta_vs_keras", "agreement",
               "p50_ms_1t", "p95_ms_1t", "p50_ms_2t", "decode_p50_ms", "peak_rss_bytes")


def _decode_ms(run, logits, tagged, length: int = 50, repeats: int = 200) -> float:
    """p50 wall time of the bundle's decoding step (Viterbi or argmax) for one sentence of
    ``length`` units."""
    row = logits[:1].copy()
    mask = np.zeros(tagged[:1].shape, bool)
    mask[0, 1:1 + min(length, mask.shape[1] - 2)] = True
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decode(run.model, row, mask)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.percentile(times, 50))


@BENCHMARKS.register("ner")
def benchmark_tagger(export_dir: str, manifest: Dict, latency_queries: int = 300):
    """Every exported file of a token classifier on the run's test split through its real
    runtime (fresh process): entity F1 after the bundle's decoding, tag agreement with Keras
    on the tagged positions, size, peak memory, batch-1 latency with 1 and 2 threads (every
    row is padded to ``max_seq_len``, so any sentence up to that length costs the same) and
    the decoding step's own p50 for a 50-unit sentence."""
    run = load_run(check_fresh(export_dir, manifest))
    data = prepare_ner_data(from_dict(DataConfig, manifest["data"]), tag_names=run.label_names)
    test = data.split("test")
    enc = encode_split(test, run.tokenizer, run.label_names, data.scheme, run.max_seq_len)
    tagged = np.zeros(enc.ids.shape, bool)
    for row, al in enumerate(enc.alignments):
        tagged[row, offsets.unit_positions(al, run.max_seq_len)] = True
    gold = [e.spans for e in test]

    def scored(logits):
        tags = decode(run.model, logits, tagged)
        pred = [offsets.decode_tags(al, row, run.label_names, data.scheme)
                for al, row in zip(enc.alignments, tags)]
        return entity_report(gold, pred, data.types), tags

    reference = run.model.predict(enc.ids, batch_size=256, verbose=0)
    ref_report, ref_tags = scored(reference)

    def record(fmt, file_bytes, logits, **extra):
        rep, tags = scored(logits)
        return {"format": fmt, "file_bytes": file_bytes, "entity_f1": rep["f1"],
                "precision": rep["precision"], "recall": rep["recall"],
                "f1_delta_vs_keras": rep["f1"] - ref_report["f1"],
                "agreement": float((tags == ref_tags)[tagged].mean()),
                "min_agreement": MIN_AGREEMENT.get(fmt), **extra,
                "per_type": {t: v["f1"] for t, v in rep["per_type"].items()},
                "macro_f1": rep["macro_f1"], "type_confusion": rep["type_confusion"]}

    decode_ms = _decode_ms(run, reference, tagged)
    records = [record("keras", os.path.getsize(os.path.join(run.run_dir, KERAS_FILE)),
                      reference, p50_ms_1t=None, p95_ms_1t=None, p50_ms_2t=None,
                      p95_ms_2t=None, peak_rss_bytes=None, decode_p50_ms=decode_ms,
                      path=KERAS_FILE)]
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = os.path.join(tmp, "ids.npy")
        np.save(ids_file, enc.ids)
        for f in manifest["files"]:
            logging.info("benchmarking %s (%d test sentences, %d latency queries)", f["format"],
                         len(enc.ids), latency_queries)
            path = os.path.join(export_dir, f["path"])
            m = _measure_in_child(path, ids_file, 1, latency_queries)
            two = _measure_in_child(path, ids_file, 2, latency_queries)
            m.update(p50_ms_2t=two["p50_ms_2t"], p95_ms_2t=two["p95_ms_2t"])
            logits = m.pop("logits")
            m.pop("probabilities", None)  # the entities come from the logits
            if path.endswith(".tflite"):
                with open(path, "rb") as fh:
                    m["size_breakdown"] = size_breakdown(fh.read())
            records.append(record(f["format"], f["file_bytes"], logits, path=f["path"],
                                  decode_p50_ms=decode_ms, **m))
    _compare_with_float(records)
    for r in records:
        r["parity_ok"] = r["min_agreement"] is None or r["agreement"] >= r["min_agreement"]
    write_json(os.path.join(export_dir, RESULT_FILE), records)
    rows = [[_cell(r[c]) for c in NER_COLUMNS] for r in records]
    write_text(os.path.join(export_dir, TABLE_FILE), print_table(rows, NER_COLUMNS) + "\n")
    return records
