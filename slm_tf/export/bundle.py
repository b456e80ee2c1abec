"""The Android bundle: a ``.tflite`` file plus everything an app needs to call it without
Python, as a documented sidecar (``bundle.json``, ``vocab.txt``, ``labels.txt``, ``README.md``).

Why a sidecar and not TFLite metadata: the metadata writers (tflite-support) cannot be
installed beside TF 2.21, and MediaPipe's writer does not import (see DESIGN.md); the sidecar
describes the same facts and an app reads it with any JSON parser.
"""
import os
import shutil
from typing import Dict, List

from slm_tf.data.readers import label_problem
from slm_tf.errors import UserError
from slm_tf.export.tflite import signature_io
from slm_tf.io_utils import atomic_path, write_json, write_text
from slm_tf.tokenizers import Tokenizer
from slm_tf.tokenizers.normalize import CJK_RANGES
from slm_tf.trust.serving import ServingHead, abstain_spec

BUNDLE_DIR = "android"
MODEL_FILE = "model.tflite"
SPEC_FILE = "bundle.json"
VOCAB_FILE = "vocab.txt"
LABELS_FILE = "labels.txt"

# The tokenizer, step by step: the contract an app reimplements (tests run an independent
# implementation of exactly this text against the Keras model).
_STEPS = {
    "common": [
        "Work on Unicode code points (in Kotlin iterate codePoints(), not UTF-16 chars).",
        "If lowercase: lower-case the text (Unicode full case mapping; Kotlin "
        "lowercase(Locale.ROOT), Python str.lower).",
        "If strip_accents: Unicode NFD, then drop every code point of category Mn. "
        "Otherwise: Unicode NFC.",
        "Replace every code point of category Cc, Cf or Z* (Zs, Zl, Zp) with a space ' '.",
    ],
    "wordpiece": [
        "Put a space before and after every code point of category P* or S*, and every CJK "
        "ideograph (a code point inside any of cjk_ranges, inclusive).",
        "Split on ' ' and drop empty strings: these are the words.",
        "For each word: if its UTF-8 encoding is longer than max_bytes_per_word bytes it becomes "
        "[UNK]. Otherwise split it greedily, longest match first: from the current position "
        "take the longest substring in the vocabulary (every piece after the first is looked "
        "up with suffix_indicator prepended); if no substring matches at some position, the "
        "whole word becomes the single token [UNK].",
    ],
    "char": [
        "Every code point that is not ' ' is a token; a token missing from the vocabulary is "
        "[UNK].",
    ],
    "char_words": [
        "Split on ' ' and drop empty strings: these are the words.",
        "Every code point of every word is a token, and one [SPACE] (space_id) goes between "
        "two consecutive words (none before the first or after the last); a token missing "
        "from the vocabulary is [UNK].",
    ],
    "ids": [
        "Token id = its 0-based line number in vocab.txt.",
        "ids = [cls_id] + the first (max_seq_len - 2) token ids + [sep_id], then pad with "
        "pad_id up to max_seq_len.",
        "Feed an int32 tensor of shape [1, max_seq_len] to the input named in 'input'. Read "
        "'probabilities' (softmax) or 'logits', float32 [1, num_labels]; label i is line i "
        "(0-based) of labels.txt.",
    ],
}


def tokenizer_spec(tokenizer: Tokenizer, max_seq_len: int) -> Dict:
    """A complete, implementation-free description of ``tokenizer`` for apps."""
    cfg = tokenizer.config()
    spec = {"type": tokenizer.kind, "vocab_file": VOCAB_FILE, "vocab_size": tokenizer.vocab_size,
            "lowercase": tokenizer.lowercase, "strip_accents": tokenizer.strip_accents,
            "max_seq_len": max_seq_len, "pad_id": tokenizer.pad_id, "unk_id": tokenizer.unk_id,
            "cls_id": tokenizer.cls_id, "sep_id": tokenizer.sep_id,
            "special_ids": cfg["special_ids"]}
    if tokenizer.kind == "wordpiece":
        spec.update(suffix_indicator=cfg["suffix_indicator"],
                    max_bytes_per_word=cfg["max_bytes_per_word"],
                    cjk_ranges=[[a, b] for a, b in CJK_RANGES])
    steps = tokenizer.kind
    if cfg.get("word_boundaries"):
        spec.update(word_boundaries=True, space_id=tokenizer.space_id)
        steps = "char_words"
    spec["steps"] = _STEPS["common"] + _STEPS[steps] + _STEPS["ids"]
    return spec


def _readme(spec: Dict) -> str:
    steps = "\n".join(f"{i}. {s}" for i, s in enumerate(spec["tokenizer"]["steps"], 1))
    io = spec["io"]
    outputs = ", ".join(f"`{k}` {v['dtype']} {v['shape']}" for k, v in io["outputs"].items())
    return (f"# {spec['name']}: Android bundle\n\n"
            f"- `{MODEL_FILE}`: {spec['format']} TFLite model, builtin ops only "
            "(plain LiteRT runtime, no Flex delegate).\n"
            f"- `{VOCAB_FILE}`, `{LABELS_FILE}` ({spec['num_labels']} labels), "
            f"`{SPEC_FILE}` (everything below, machine-readable).\n\n"
            f"Input `{io['input_name']}` int32 {io['inputs'][io['input_name']]['shape']}; "
            f"outputs {outputs}.\n\n## Tokenization ({spec['tokenizer']['type']})\n\n{steps}\n\n"
            "See BUILD.md in the slm_tf repository for the Kotlin code.\n")


def write_bundle(out_dir: str, tflite_path: str, fmt: str, tokenizer: Tokenizer,
                 max_seq_len: int, label_names: List[str], name: str,
                 head: ServingHead = ServingHead()) -> str:
    """Writes ``<out_dir>/android/`` atomically and returns its path."""
    path = os.path.join(out_dir, BUNDLE_DIR)
    for label in label_names:  # labels.txt holds one label per line
        problem = label_problem(label)
        if problem:
            raise UserError(f"{LABELS_FILE}: {problem}, so the app would read the labels "
                            "wrongly. Fix: clean the label in the training data and retrain "
                            "(newer versions refuse such labels when reading the data).")
    with open(tflite_path, "rb") as f:
        io = signature_io(f.read())
    spec = {"name": name, "format": fmt, "model_file": MODEL_FILE, "labels_file": LABELS_FILE,
            "num_labels": len(label_names), "io": io,
            "tokenizer": tokenizer_spec(tokenizer, max_seq_len),
            "temperature": head.temperature, "abstain": abstain_spec(head)}
    with atomic_path(path, is_dir=True) as tmp:
        shutil.copyfile(tflite_path, os.path.join(tmp, MODEL_FILE))
        tokenizer.save(tmp)  # vocab.txt (+ tokenizer.json for slm_tf itself)
        write_text(os.path.join(tmp, LABELS_FILE), "".join(f"{n}\n" for n in label_names))
        write_json(os.path.join(tmp, SPEC_FILE), spec)
        write_text(os.path.join(tmp, "README.md"), _readme(spec))
    return path
