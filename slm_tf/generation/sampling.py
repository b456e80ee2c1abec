"""Choosing the next token from logits: repetition penalty, temperature, top-k, top-p.

Plain numpy on ``[B, V]`` rows: decoding is one row per prompt per step, and a seeded
``numpy.random.Generator`` makes the same seed give the same text.
"""
import dataclasses
from typing import Sequence, Tuple

import numpy as np

from slm_tf.config import field, non_negative, positive


@dataclasses.dataclass
class SamplingConfig:
    max_new_tokens: int = field(200, "Tokens to generate after the prompt.", validate=positive,
                                rule="> 0")
    temperature: float = field(0.8, "Softmax temperature; 0 = greedy (always the most likely "
                               "token).", validate=non_negative, rule=">= 0")
    top_k: int = field(0, "Sample only among the k most likely tokens (0 = all).",
                       validate=non_negative, rule=">= 0")
    top_p: float = field(1.0, "Sample only among the smallest set of tokens whose probability "
                         "mass reaches p (nucleus sampling; 1 = all).",
                         validate=lambda p: 0.0 < p <= 1.0, rule="in (0, 1]")
    repetition_penalty: float = field(1.0, "Divide positive (multiply negative) logits of "
                                      "tokens already in the text by this (1 = off).",
                                      validate=positive, rule="> 0")
    stop: list = field([], "Stop a continuation at the first of these strings (cut before it).")
    seed: int = field(0, "Random seed: the same seed gives the same text.")


def apply_repetition_penalty(logits: np.ndarray, seen: Sequence[Sequence[int]],
                             penalty: float) -> np.ndarray:
    """CTRL's penalty (Keskar et al., 2019): a token already in row ``i``'s text gets its logit
    divided by ``penalty`` when positive and multiplied when negative."""
    if penalty == 1.0:
        return logits
    logits = logits.copy()
    for row, ids in enumerate(seen):
        ids = np.unique(np.asarray(ids, np.int64))
        if ids.size:
            vals = logits[row, ids]
            logits[row, ids] = np.where(vals > 0, vals / penalty, vals * penalty)
    return logits


def filter_top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Logits outside each row's ``k`` largest become -inf (ties at the k-th value stay)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = np.sort(logits, axis=-1)[:, -k][:, np.newaxis]
    return np.where(logits >= kth, logits, -np.inf)


def filter_top_p(logits: np.ndarray, p: float) -> np.ndarray:
    """Keeps, per row, the smallest set of most likely tokens whose probability mass is
    ``>= p``; the rest become -inf."""
    if p >= 1.0:
        return logits
    probs = _softmax(logits)
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
    keep_sorted = mass_before < p  # a token is needed while the mass before it is short of p
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, logits, -np.inf)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - np.max(logits, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


def choose_tokens(logits: np.ndarray, cfg: SamplingConfig, rng: np.random.Generator,
                  seen: Sequence[Sequence[int]] = ()) -> Tuple[np.ndarray, np.ndarray]:
    """``(ids[B], probs[B, V])``: the next token of each row and the distribution it was
    drawn from."""
    logits = np.asarray(logits, np.float64)
    if seen:
        logits = apply_repetition_penalty(logits, seen, cfg.repetition_penalty)
    if cfg.temperature == 0:
        ids = np.argmax(logits, axis=-1)
        probs = np.zeros_like(logits)
        probs[np.arange(len(ids)), ids] = 1.0
        return ids, probs
    logits = filter_top_p(filter_top_k(logits / cfg.temperature, cfg.top_k), cfg.top_p)
    probs = _softmax(logits)
    ids = np.array([rng.choice(probs.shape[-1], p=row) for row in probs])
    return ids, probs
