"""An app's-eye client of a named-entity Android bundle, written only from ``bundle.json``'s
description: text -> units -> ids -> LiteRT -> decoding (argmax, or Viterbi with ``crf.json``)
-> tags -> entity character spans.

Pure Python, numpy and the LiteRT interpreter; no TensorFlow and no slm_tf import (the
tokenizer's normalization and word pieces come from ``android_client``, itself written from the
bundle's text), so the bundle's description is proven sufficient on its own.

  python tests/ner_client.py <bundle dir> <texts.json> <out.json>
writes {"entities": [[{"start", "end", "type", "text"}, ...], ...], "tensorflow_loaded": bool}.
"""
import json
import os
import sys
import unicodedata

import numpy as np
from ai_edge_litert.interpreter import Interpreter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from android_client import BundleTokenizer  # noqa: E402


def _space(ch):
    cat = unicodedata.category(ch)
    return cat in ("Cc", "Cf") or cat[0] == "Z"


def units(text, tok):
    """(start, end, token ids) of every unit with at least one token."""
    spans = []
    if tok.s["type"] == "char":
        spans = [(i, i + 1) for i, c in enumerate(text) if not _space(c)]
    else:
        start = None
        for i, c in enumerate(text):
            isolated = unicodedata.category(c)[0] in "PS" or tok._cjk(c)
            if _space(c) or isolated:
                if start is not None:
                    spans.append((start, i))
                    start = None
                if isolated:
                    spans.append((i, i + 1))
            elif start is None:
                start = i
        if start is not None:
            spans.append((start, len(text)))
    out = []
    for a, b in spans:
        norm = tok._normalized(text[a:b])
        if tok.s["type"] == "char":
            ids = [tok.ids.get(c, tok.s["unk_id"]) for c in norm if c != " "]
        else:
            spaced = "".join(f" {c} " if unicodedata.category(c)[0] in "PS" or tok._cjk(c)
                             else c for c in norm)
            ids = [i for w in spaced.split(" ") if w for i in tok._word_pieces(w)]
        if ids:
            out.append((a, b, ids))
    return out


def viterbi(em, trans, start, end):
    score = start + em[0]
    backs = []
    for e in em[1:]:
        cand = score[:, None] + trans
        backs.append(cand.argmax(0))
        score = cand.max(0) + e
    best = [int(np.argmax(score + end))]
    for b in reversed(backs):
        best.append(int(b[best[-1]]))
    return best[::-1]


def tags_to_entities(tags, prefixes):
    """[(first unit, last unit + 1, type)] by the bundle's walking rule."""
    roles = {p: r for p, r in prefixes.items()}
    spans, open_, etype = [], None, None
    for i, tag in enumerate(tags + ["O"]):
        if tag == "O" or i == len(tags):
            if open_ is not None:
                spans.append((open_, i, etype))
            open_ = None
            continue
        prefix, t = tag[0], tag[2:]
        role = roles[prefix]
        if role in ("begin", "single") or open_ is None or t != etype:
            if open_ is not None:
                spans.append((open_, i, etype))
            open_, etype = i, t
        if role in ("end", "single"):
            spans.append((open_, i + 1, etype))
            open_ = None
    return spans


def main(bundle_dir, texts_file, out_file):
    def load(name):
        with open(os.path.join(bundle_dir, name), encoding="utf-8") as f:
            return f.read()
    spec = json.loads(load("bundle.json"))
    tok = BundleTokenizer(spec["tokenizer"], load(spec["tokenizer"]["vocab_file"]).split("\n"))
    tags = [t for t in load(spec["labels_file"]).split("\n") if t]
    crf = json.loads(load(spec["crf_file"])) if spec["crf_file"] else None
    texts = json.loads(load(os.path.abspath(texts_file)))
    runner = Interpreter(model_path=os.path.join(bundle_dir, spec["model_file"])) \
        .get_signature_runner()
    n = spec["tokenizer"]["max_seq_len"]
    result = []
    for text in texts:
        us = units(text, tok)
        ids, positions = [spec["tokenizer"]["cls_id"]], []
        for a, b, piece_ids in us:
            positions.append(len(ids))
            ids += piece_ids
        ids = ids[:n - 1] + [spec["tokenizer"]["sep_id"]]
        ids += [spec["tokenizer"]["pad_id"]] * (n - len(ids))
        kept = [(u, p) for u, p in zip(us, positions) if p < n - 1]
        logits = runner(**{spec["io"]["input_name"]: np.asarray([ids], np.int32)})["logits"][0]
        em = logits[[p for _, p in kept]].astype(np.float64)
        if not len(em):
            best = []
        elif crf:
            best = viterbi(em, np.asarray(crf["transitions"]), np.asarray(crf["start"]),
                           np.asarray(crf["end"]))
        else:
            best = list(em.argmax(-1))
        names = [tags[i] for i in best]
        ents = []
        for first, last, etype in tags_to_entities(names, spec["scheme_prefixes"]):
            a, b = kept[first][0][0], kept[last - 1][0][1]
            ents.append({"start": a, "end": b, "type": etype, "text": text[a:b]})
        result.append(ents)
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump({"entities": result, "tensorflow_loaded": "tensorflow" in sys.modules}, f,
                  ensure_ascii=False)


if __name__ == "__main__":
    main(*sys.argv[1:4])
