"""The NER predictor: texts -> entities with character offsets into each text.

The export's graph outputs per-token scores ``[B, max_seq_len, tags]``; the tag names are the
bundle's ``labels.txt``. Texts are cut into units and tokens exactly as in training
(:mod:`slm_tf.ner.offsets`), so every entity is an exact substring of the request's text.
"""
from typing import Dict, List, Sequence

import numpy as np

from slm_tf.ner import offsets
from slm_tf.ner.schemes import detect_scheme
from slm_tf.serving.predictors import PREDICTORS, BundlePredictor


@PREDICTORS.register("ner")
class NerPredictor(BundlePredictor):
    """Texts -> ``{"entities": [{"text", "type", "start", "end"}, ...]}`` per text."""

    task = "ner"

    def __init__(self, version_dir: str, fmt: str, manifest: Dict):
        super().__init__(version_dir, fmt, manifest)
        self.scheme = detect_scheme(self.labels)
        # A CRF export carries its transition, start and end scores in the bundle spec; the
        # decoding is then Viterbi over the tagged positions, as in training.
        crf = self.spec.get("crf")
        self.crf = tuple(np.asarray(crf[k], np.float64) for k in ("transitions", "start", "end")) \
            if crf else None

    def predict(self, runner, texts: Sequence[str], params=None) -> List[Dict]:
        """Entities of each text (offsets into the text as sent, end exclusive)."""
        # Redaction keeps no offsets, so a redacted run is aligned on the redacted text and its
        # entities point into it (the server never returns what it was not allowed to see).
        texts = self.redacted(texts)
        aligned = [offsets.align(self.tokenizer, t) for t in texts]
        ids = np.stack([offsets.encode_ids(self.tokenizer, a, self.max_seq_len) for a in aligned])
        outputs = runner(ids)
        tags = self._decode(outputs, aligned)
        out = []
        for text, a, row in zip(texts, aligned, tags):
            spans = offsets.decode_tags(a, row, self.labels, self.scheme, self.max_seq_len)
            out.append({"entities": [{"text": text[s.start:s.end], "type": s.type,
                                      "start": s.start, "end": s.end} for s in spans]})
        return out

    def _decode(self, outputs: Dict[str, np.ndarray], aligned) -> np.ndarray:
        if "tags" in outputs:  # decoded in the graph
            return outputs["tags"]
        scores = outputs["logits"] if "logits" in outputs else outputs["probabilities"]
        if self.crf is None:
            return scores.argmax(-1)
        from slm_tf.models.crf import viterbi_decode_np
        tagged = np.zeros(scores.shape[:2], bool)
        for row, a in enumerate(aligned):
            tagged[row, offsets.unit_positions(a, self.max_seq_len)] = True
        return viterbi_decode_np(scores, tagged, *self.crf)

    def signature(self) -> Dict:
        """TF Serving-style signature_def of the text signature."""
        return {"inputs": {"text": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}}},
                "outputs": {"entities": {"dtype": "DT_STRING"}},
                "method_name": "tensorflow/serving/predict", "tags": self.labels,
                "scheme": self.scheme}
