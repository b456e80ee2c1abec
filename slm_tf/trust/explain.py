"""Per-token attributions by integrated gradients (Sundararajan et al. 2017) on the token
embedding output, for every zoo model and the BERT teacher.

The model is split at its token ``Embedding`` layer (found by type, also inside tfmot
wrappers): the rest of the graph is re-entered with interpolated embeddings while the padding
mask still comes from the real ids. The baseline zeroes the embeddings of the text's own tokens
and keeps [CLS]/[SEP]/[PAD] as they are, so only real tokens receive attribution and
``sum(attributions) ~= f(x) - f(baseline)`` (completeness) can be checked.

Written here rather than taken from a library: alibi/captum/tf-explain either need PyTorch
models or pin Keras 3 / old TF, and none splits a Keras 2 functional model at its embeddings.
"""
import dataclasses
import html
import os
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from slm_tf.config import field
from slm_tf.errors import UserError

DEFAULT_STEPS = 48


def token_embedding_layer(model) -> keras.layers.Layer:
    """The model's token ``Embedding`` layer (the one fed by the ids input)."""
    found = [l for l in model.layers
             if isinstance(getattr(l, "layer", l), keras.layers.Embedding)]
    if len(found) != 1:
        raise UserError(f"{model.name}: expected exactly one token Embedding layer, found "
                        f"{len(found)} ({[l.name for l in found]}); integrated gradients need "
                        "one to interpolate on.")
    return found[0]


@dataclasses.dataclass
class Explanation:
    """Attributions of one text towards ``label``."""
    tokens: List[str]
    attributions: np.ndarray        # one per token (special tokens and padding excluded)
    label: str
    label_index: int
    probability: float              # f(x): the label's probability
    baseline_probability: float     # f(baseline)
    completeness_gap: float         # |sum(attributions) - (f(x) - f(baseline))|

    def top(self, k: int) -> List[int]:
        """Indices of the ``k`` tokens with the largest attribution."""
        return [int(i) for i in np.argsort(-self.attributions, kind="stable")[:k]]


class IntegratedGradients:
    """Integrated gradients of a class's (calibrated) probability w.r.t. token embeddings."""

    def __init__(self, model, temperature: float = 1.0, steps: int = DEFAULT_STEPS):
        self.embedding = token_embedding_layer(model)
        self.rest = keras.Model([model.input, self.embedding.output], model.output)
        self.temperature = temperature
        self.steps = steps

    def probabilities(self, ids: np.ndarray, embeddings: tf.Tensor) -> tf.Tensor:
        """Softmax of the logits / T for ids rows and (interpolated) embeddings."""
        return tf.nn.softmax(self.rest([ids, embeddings], training=False) / self.temperature)

    def attribute(self, ids: np.ndarray, word_mask: np.ndarray,
                  label: Optional[int] = None) -> Dict:
        """Attributions for one ``ids`` row; ``word_mask`` marks the real (non-special) tokens.

        ``label`` defaults to the predicted class. Trapezoidal rule over ``steps`` intervals.
        """
        ids = np.asarray(ids, np.int32)[np.newaxis]
        x = self.embedding(ids)
        baseline = x * (1.0 - tf.constant(word_mask, x.dtype)[tf.newaxis, :, tf.newaxis])
        p = self.probabilities(ids, x).numpy()[0]
        label = int(np.argmax(p)) if label is None else int(label)
        alphas = tf.reshape(tf.linspace(0.0, 1.0, self.steps + 1), [-1, 1, 1])
        path = baseline + alphas * (x - baseline)
        batch_ids = np.repeat(ids, self.steps + 1, axis=0)
        with tf.GradientTape() as tape:
            tape.watch(path)
            probs = self.probabilities(batch_ids, path)[:, label]
        grads = tape.gradient(probs, path).numpy()
        avg = (grads[:-1] + grads[1:]).mean(axis=0) / 2.0
        per_position = ((x - baseline).numpy()[0] * avg).sum(axis=-1)
        f_base = float(probs[0])
        return {"label": label, "probability": float(p[label]), "baseline_probability": f_base,
                "per_position": per_position}


def explain_text(ig: IntegratedGradients, tokenizer, text: str, max_seq_len: int,
                 label_names: List[str], label: Optional[int] = None) -> Explanation:
    """Attributions of ``text``'s tokens (as the tokenizer splits it, truncated like the model
    sees it) towards ``label`` (default: the prediction)."""
    tokens = tokenizer.tokenize(text)[:max_seq_len - 2]
    ids = tokenizer.encode([text], max_seq_len)[0]
    mask = np.zeros(max_seq_len, np.float32)
    mask[1:1 + len(tokens)] = 1.0
    r = ig.attribute(ids, mask, label)
    attr = r["per_position"][1:1 + len(tokens)]
    gap = abs(float(attr.sum()) - (r["probability"] - r["baseline_probability"]))
    return Explanation(tokens, attr, label_names[r["label"]], r["label"], r["probability"],
                       r["baseline_probability"], gap)


def format_text(e: Explanation) -> str:
    """A plain-text table: token and attribution, in text order."""
    lines = [f"label {e.label!r}: p = {e.probability:.4f} (baseline {e.baseline_probability:.4f}"
             f", completeness gap {e.completeness_gap:.4f})"]
    lines += [f"  {t:<20} {a:+.4f}" for t, a in zip(e.tokens, e.attributions)]
    return "\n".join(lines)


def heatmap_html(explanations: List[Explanation], texts: List[str]) -> str:
    """A self-contained HTML page: each token shaded red (for the label) or blue (against),
    with the text HTML-escaped."""
    rows = []
    for e, text in zip(explanations, texts):
        scale = max(1e-12, float(np.abs(e.attributions).max(initial=0.0)))
        spans = []
        for t, a in zip(e.tokens, e.attributions):
            alpha = min(1.0, abs(a) / scale)
            rgb = "220,40,40" if a >= 0 else "40,90,220"
            spans.append(f"<span title='{a:+.4f}' style='background:rgba({rgb},{alpha:.2f});"
                         f"padding:1px 2px;margin:1px'>{html.escape(t)}</span>")
        rows.append(f"<p><b>{html.escape(e.label)}</b> (p = {e.probability:.3f}): "
                    f"<i>{html.escape(text)}</i><br>{''.join(spans)}</p>")
    return ("<!doctype html><meta charset='utf-8'><title>slm_tf explanations</title>"
            "<h1>Integrated-gradients attributions</h1><p>red: pushes towards the label, "
            "blue: against; hover for the value.</p>" + "".join(rows) + "\n")


@dataclasses.dataclass
class ExplainConfig:
    run_dir: str = field("", "The --output_dir of a finished train/distill/compress run.",
                         validate=bool, rule="set (e.g. --run_dir=runs/x)")
    text: str = field("", "The text to explain.", validate=bool, rule="a non-empty text")
    label: str = field("", "Explain towards this label (default: the predicted one).")
    steps: int = field(DEFAULT_STEPS, "Integration steps (32-64 keep the completeness gap "
                       "small).", validate=lambda s: s is not None and s >= 2, rule=">= 2")
    html: str = field("", "Where the HTML heat map goes (default <run_dir>/explain.html).")


def explain_run(cfg: ExplainConfig) -> Explanation:
    """Explains ``cfg.text`` with the run's model (and its fitted temperature); writes the
    HTML heat map and returns the explanation."""
    from slm_tf.io_utils import write_text
    from slm_tf.train.artifacts import load_run
    from slm_tf.trust.serving import load_head
    run = load_run(cfg.run_dir)
    label = None
    if cfg.label:
        if cfg.label not in run.label_names:
            raise UserError(f"--label={cfg.label!r} is not one of the model's labels "
                            f"(e.g. {run.label_names[:5]}). Fix: pick one from labels.json.")
        label = run.label_names.index(cfg.label)
    ig = IntegratedGradients(run.model, load_head(cfg.run_dir).temperature, cfg.steps)
    out = explain_text(ig, run.tokenizer, cfg.text, run.max_seq_len, run.label_names, label)
    write_text(cfg.html or os.path.join(cfg.run_dir, "explain.html"),
               heatmap_html([out], [cfg.text]))
    return out
