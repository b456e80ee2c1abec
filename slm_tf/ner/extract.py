"""Entities of raw texts from a trained ``--task=ner`` run, with offsets into each text."""
import json
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

from slm_tf.data.readers import DataError, _decoded_lines, _RowPolicy
from slm_tf.errors import UserError
from slm_tf.ner import offsets
from slm_tf.ner.schemes import detect_scheme
from slm_tf.ner.training import decode


def extract_entities(run, texts: Sequence[str], batch_size: int = 64) -> List[List[Dict]]:
    """Per text: ``{"start", "end", "type", "text"}`` of each predicted entity (character
    offsets into that text, end exclusive)."""
    if run.task != "ner":
        raise UserError(f"{run.run_dir} is a {run.task!r} run; extract entities with a run "
                        "trained with --task=ner")
    scheme = detect_scheme(run.label_names)
    length = run.max_seq_len
    alignments = [offsets.align(run.tokenizer, t) for t in texts]
    ids = np.stack([offsets.encode_ids(run.tokenizer, a, length) for a in alignments]) \
        if alignments else np.zeros((0, length), np.int32)
    tagged = np.zeros(ids.shape, bool)
    for row, a in enumerate(alignments):
        tagged[row, offsets.unit_positions(a, length)] = True
    logits = run.model.predict(ids, batch_size=batch_size, verbose=0) if len(ids) else ids
    tags = decode(run.model, logits, tagged) if len(ids) else ids
    out = []
    for text, a, row in zip(texts, alignments, tags):
        spans = offsets.decode_tags(a, row, run.label_names, scheme, length)
        out.append([{"start": s.start, "end": s.end, "type": s.type,
                     "text": text[s.start:s.end]} for s in spans])
    return out


def read_texts(path: str, text_key: str = "text") -> Iterator[Tuple[str, str]]:
    """``(file:line, text)`` from a JSONL file (``text_key``) or a plain file (one per line)."""
    policy = _RowPolicy("error")
    jsonl = path.endswith((".jsonl", ".ndjson", ".json"))
    for i, line in _decoded_lines(path, policy):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if not jsonl:
            yield f"{path}:{i}", line
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{i}: not valid JSON ({e.msg}). Fix: write one JSON object "
                            "per line.") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(text_key), str):
            raise DataError(f"{path}:{i}: no string {text_key!r} key. Fix: add it or pass "
                            "--text_key.")
        yield f"{path}:{i}", obj[text_key]
