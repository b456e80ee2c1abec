"""A TensorFlow-free client of a language model's Android bundle: only LiteRT, numpy and the
files in the bundle, following bundle.json's decode loop step by step (what the Kotlin code in
BUILD.md does), greedy.

  python tests/lm_android_client.py <bundle_dir> <prompts.json> <out.json> [max_new_tokens]

Writes {"texts": [...], "ids": [[...]], "tensorflow_loaded": false}.
"""
import json
import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def unescape(token):
    out, i = [], 0
    while i < len(token):
        if token[i] == "\\" and token[i + 1:i + 2] == "u":
            out.append(chr(int(token[i + 2:i + 6], 16)))
            i += 6
        else:
            out.append(token[i])
            i += 1
    return "".join(out)


class CharTokenizer:
    def __init__(self, bundle, spec):
        with open(os.path.join(bundle, "vocab.txt"), encoding="utf-8") as f:
            lines = f.read().split("\n")[:spec["vocab_size"]]
        special = set(spec["special_ids"].values())
        self.chars = ["" if i in special else unescape(t) for i, t in enumerate(lines)]
        self.ids_of = {c: i for i, c in enumerate(self.chars) if c}
        self.unk = spec["unk_id"]

    def encode(self, text):
        return [self.ids_of.get(c, self.unk) for c in text]

    def decode(self, ids):
        return "".join("\ufffd" if i == self.unk else self.chars[i] for i in ids)


def continue_greedy(bundle, prompt, max_new_tokens):
    """The prompt's greedy continuation: (text, new ids)."""
    spec = json.load(open(os.path.join(bundle, "bundle.json"), encoding="utf-8"))
    gen = json.load(open(os.path.join(bundle, spec["generation_file"]), encoding="utf-8"))
    tok = CharTokenizer(bundle, spec["tokenizer"])
    interpreter = Interpreter(model_path=os.path.join(bundle, spec["model_file"]))
    prefill = interpreter.get_signature_runner("prefill")
    decode = interpreter.get_signature_runner("decode")
    context, eod = spec["max_context"], spec["tokenizer"]["eod_id"]
    prompt_ids = ([eod] + tok.encode(prompt))[-context:]
    ids = np.full((1, context), spec["tokenizer"]["pad_id"], np.int32)
    ids[0, :len(prompt_ids)] = prompt_ids
    out = prefill(ids=ids)
    cache, logits = out["cache"], out["logits"][0, len(prompt_ids) - 1]
    position = len(prompt_ids)
    new, text = [], ""
    for _ in range(max_new_tokens):
        token = int(np.argmax(logits))  # temperature 0
        if token == eod:
            break
        new.append(token)
        text = tok.decode(new)
        cut = min((i for i in (text.find(s) for s in gen["stop"]) if i >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
            break
        out = decode(token=np.array([[token]], np.int32), cache=cache,
                     position=np.array([position], np.int32))
        cache, logits = out["cache"], out["logits"][0]
        position += 1
    return text, new


def main():
    bundle, prompts_file, out_file = sys.argv[1:4]
    max_new = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    prompts = json.load(open(prompts_file, encoding="utf-8"))
    results = [continue_greedy(bundle, p, max_new) for p in prompts]
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump({"texts": [t for t, _ in results], "ids": [i for _, i in results],
                   "tensorflow_loaded": "tensorflow" in sys.modules}, f)


if __name__ == "__main__":
    main()
