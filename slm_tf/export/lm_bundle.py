"""The Android bundle of a language model: the TFLite file with ``prefill``/``decode``, the
tokenizer, ``generation.json`` (sampling defaults, stop strings) and ``bundle.json`` (tensors
and the decode loop step by step). BUILD.md holds the Kotlin loop; a test checks its names
against ``bundle.json`` and runs a TensorFlow-free client of this folder."""
import os
import shutil
from typing import Dict, List

import numpy as np

from slm_tf.data.lm_dataset import eod_id
from slm_tf.export.bundle import BUNDLE_DIR, MODEL_FILE, SPEC_FILE
from slm_tf.io_utils import atomic_path, write_json, write_text

GENERATION_FILE = "generation.json"
# The app's sampling defaults (the same knobs as slm_tf.generation.SamplingConfig).
GENERATION_DEFAULTS = {"max_new_tokens": 200, "temperature": 0.8, "top_k": 40, "top_p": 0.95,
                       "repetition_penalty": 1.0, "stop": ["\n\n"], "seed": 0}

_TOKENIZER_STEPS = {
    "char_exact": [
        "vocab.txt: line i (0-based) is the token of id i. Lines [PAD], [UNK], [CLS], [SEP], "
        "[MASK] are special; every other line is one Unicode code point, written with "
        "\\uXXXX escapes for whitespace, control characters and the backslash (unescape: "
        "each '\\u' followed by 4 hex digits is that code point).",
        "Text -> ids: every code point of the text (no normalization, case kept; in Kotlin "
        "iterate codePoints()) is the id of its line; a code point not in vocab.txt is unk_id.",
        "Ids -> text: concatenate the code points of the ids; special ids give nothing, "
        "unk_id gives U+FFFD.",
    ],
    "sentencepiece": [
        "tokenizer.model is a SentencePiece model (identity normalization, byte fallback): "
        "encode with the SentencePiece library for Android/Kotlin; ids are its piece ids.",
        "Ids -> text: SentencePiece decode of the ids.",
    ],
}

DECODE_LOOP = [
    "prompt_ids = [eod_id] + tokenizer(prompt); keep the last max_context ids.",
    "ids = int32 [1, max_context]: prompt_ids then pad_id (0) up to max_context.",
    "Run signature 'prefill' with input 'ids'. Output 'cache' is the state to carry; the next "
    "token's logits are output 'logits' row len(prompt_ids) - 1 (float32 [1, max_context, "
    "vocab_size]).",
    "position = len(prompt_ids).",
    "Choose the next token from the logits with generation.json's settings (temperature 0 = "
    "argmax; else repetition penalty, divide by temperature, keep top_k, keep the smallest "
    "set reaching top_p, sample).",
    "If the token is eod_id: stop. Else append its text; if the text now contains a stop "
    "string: cut it there and stop. If max_new_tokens tokens were produced: stop.",
    "Run signature 'decode' with 'token' = int32 [[token]], 'cache' = the last cache, "
    "'position' = int32 [position]. Outputs: 'logits' float32 [1, vocab_size] for the next "
    "token, 'cache' to carry. position += 1; repeat from the choice step.",
    "Past max_context tokens the cache is a sliding window (slot position % max_context "
    "holds the newest key/value); a recurrent model's cache is its state and ignores "
    "'position'.",
]


def signatures(tflite_bytes: bytes) -> Dict:
    """Each signature's input and output tensors (name -> dtype, shape) as LiteRT sees them."""
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=tflite_bytes)

    def describe(details):
        return {name: {"dtype": np.dtype(d["dtype"]).name, "shape": [int(s) for s in d["shape"]]}
                for name, d in sorted(details.items())}
    out = {}
    for key in sorted(interpreter.get_signature_list()):
        runner = interpreter.get_signature_runner(key)
        out[key] = {"inputs": describe(runner.get_input_details()),
                    "outputs": describe(runner.get_output_details())}
    return out


def lm_tokenizer_spec(tokenizer, files: List[str]) -> Dict:
    """What an app needs to turn text into ids and back (``files``: the tokenizer's files)."""
    cfg = tokenizer.config()
    return {"type": tokenizer.kind, "files": files,
            "vocab_size": tokenizer.vocab_size, "pad_id": tokenizer.pad_id,
            "unk_id": tokenizer.unk_id, "eod_id": eod_id(tokenizer),
            "special_ids": cfg.get("special_ids", {}),
            "steps": _TOKENIZER_STEPS.get(tokenizer.kind, [])}


def write_lm_bundle(out_dir: str, tflite_path: str, fmt: str, run, cache_shape: List[int],
                    generation: Dict = None) -> str:
    """Writes ``<out_dir>/android/`` atomically and returns its path."""
    path = os.path.join(out_dir, BUNDLE_DIR)
    with open(tflite_path, "rb") as f:
        sigs = signatures(f.read())
    tokenizer = run.tokenizer
    spec = {"name": run.model.name, "task": "lm", "architecture": run.model.arch,
            "format": fmt, "model_file": MODEL_FILE, "generation_file": GENERATION_FILE,
            "max_context": run.max_seq_len, "vocab_size": tokenizer.vocab_size,
            "cache_shape": list(cache_shape), "signatures": sigs, "decode_loop": DECODE_LOOP}
    with atomic_path(path, is_dir=True) as tmp:
        tokenizer.save(tmp)
        spec["tokenizer"] = lm_tokenizer_spec(tokenizer, sorted(os.listdir(tmp)))
        shutil.copyfile(tflite_path, os.path.join(tmp, MODEL_FILE))
        write_json(os.path.join(tmp, GENERATION_FILE), {**GENERATION_DEFAULTS,
                                                         **(generation or {})})
        write_json(os.path.join(tmp, SPEC_FILE), spec)
        steps = "\n".join(f"{i}. {s}" for i, s in enumerate(DECODE_LOOP, 1))
        write_text(os.path.join(tmp, "README.md"),
                   f"# {spec['name']}: Android bundle (language model)\n\n"
                   f"`{MODEL_FILE}` ({fmt}, builtin ops only), tokenizer files, "
                   f"`{GENERATION_FILE}`, `{SPEC_FILE}`.\n\n## Decode loop\n\n{steps}\n\n"
                   "See BUILD.md in the slm_tf repository for the Kotlin code.\n")
    return path
