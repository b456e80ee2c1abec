"""An app's-eye client of the Android bundle, written only from ``bundle.json``'s description.

It stands in for the Kotlin code in BUILD.md: pure Python and the LiteRT interpreter, no
TensorFlow and no slm_tf import, so the bundle's description is proven sufficient on its own.
(It deliberately reimplements the tokenizer: reusing slm_tf's would prove nothing.)

  python tests/android_client.py <bundle dir> <texts.json> <out.json>
writes {"ids": [[...]], "labels": [...], "tensorflow_loaded": bool}.
"""
import json
import os
import sys
import unicodedata

import numpy as np
from ai_edge_litert.interpreter import Interpreter


class BundleTokenizer:
    def __init__(self, spec, vocab):
        self.s = spec
        self.ids = {t: i for i, t in enumerate(vocab)}

    def _cjk(self, ch):
        return any(a <= ord(ch) <= b for a, b in self.s.get("cjk_ranges", []))

    def _normalized(self, text):
        if self.s["lowercase"]:
            text = text.lower()
        if self.s["strip_accents"]:
            text = "".join(c for c in unicodedata.normalize("NFD", text)
                           if unicodedata.category(c) != "Mn")
        else:
            text = unicodedata.normalize("NFC", text)
        return "".join(" " if unicodedata.category(c)[0] == "Z" or
                       unicodedata.category(c) in ("Cc", "Cf") else c for c in text)

    def _word_pieces(self, word):
        if len(word.encode("utf-8")) > self.s["max_bytes_per_word"]:
            return [self.s["unk_id"]]
        out, i = [], 0
        while i < len(word):
            for j in range(len(word), i, -1):
                piece = word[i:j] if i == 0 else self.s["suffix_indicator"] + word[i:j]
                if piece in self.ids:
                    out.append(self.ids[piece])
                    i = j
                    break
            else:
                return [self.s["unk_id"]]
        return out

    def encode(self, text):
        text = self._normalized(text)
        if self.s["type"] == "wordpiece":
            spaced = "".join(f" {c} " if unicodedata.category(c)[0] in "PS" or self._cjk(c)
                             else c for c in text)
            tokens = [i for w in spaced.split(" ") if w for i in self._word_pieces(w)]
        elif self.s.get("word_boundaries"):
            tokens = []
            for word in (w for w in text.split(" ") if w):
                if tokens:
                    tokens.append(self.s["space_id"])
                tokens += [self.ids.get(c, self.s["unk_id"]) for c in word]
        else:
            tokens = [self.ids.get(c, self.s["unk_id"]) for c in text if c != " "]
        n = self.s["max_seq_len"]
        ids = [self.s["cls_id"]] + tokens[:n - 2] + [self.s["sep_id"]]
        return ids + [self.s["pad_id"]] * (n - len(ids))


def main(bundle_dir, texts_file, out_file):
    with open(os.path.join(bundle_dir, "bundle.json"), encoding="utf-8") as f:
        spec = json.load(f)
    tok = spec["tokenizer"]
    with open(os.path.join(bundle_dir, tok["vocab_file"]), encoding="utf-8") as f:
        vocab = f.read().split("\n")
    with open(os.path.join(bundle_dir, spec["labels_file"]), encoding="utf-8") as f:
        labels = [line for line in f.read().split("\n") if line]
    with open(texts_file, encoding="utf-8") as f:
        texts = json.load(f)
    tokenizer = BundleTokenizer(tok, vocab)
    runner = Interpreter(model_path=os.path.join(bundle_dir, spec["model_file"])) \
        .get_signature_runner()
    name = spec["io"]["input_name"]
    all_ids, predicted = [], []
    for text in texts:
        ids = tokenizer.encode(text)
        probs = runner(**{name: np.asarray([ids], np.int32)})["probabilities"][0]
        all_ids.append(ids)
        predicted.append(labels[int(np.argmax(probs))])
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump({"ids": all_ids, "labels": predicted,
                   "tensorflow_loaded": "tensorflow" in sys.modules}, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
