"""Transfer-set augmentation after Tang et al. 2019 ("Distilling Task-Specific Knowledge from
BERT into Simple Neural Networks"): word masking, neighbour replacement and n-gram sampling.

Neighbours come from the teacher's own word-embedding space instead of a POS tagger. A masked
word becomes U+FFFD, which every vocabulary here maps to ``[UNK]`` - the teacher sees an
unknown word, as with BERT's ``[MASK]``.
"""
from typing import Dict, List, Sequence

import numpy as np

from slm_tf.distill.config import AugmentConfig  # noqa: F401  (re-exported: its old home)

MASK_WORD = "\ufffd"


def embedding_neighbours(vocab: Sequence[str], embeddings: np.ndarray, words: Sequence[str],
                         k: int = 5) -> Dict[str, List[str]]:
    """The ``k`` whole-word vocabulary entries nearest (cosine) to each of ``words``."""
    index = {t: i for i, t in enumerate(vocab)}
    candidates = [i for i, t in enumerate(vocab)
                  if t.isalpha() and not t.startswith("##") and not t.startswith("[")]
    cand = embeddings[candidates]
    cand = cand / np.maximum(np.linalg.norm(cand, axis=1, keepdims=True), 1e-8)
    present = [w for w in dict.fromkeys(words) if w in index]
    out = {}
    for start in range(0, len(present), 512):
        chunk = present[start:start + 512]
        q = embeddings[[index[w] for w in chunk]]
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-8)
        top = np.argsort(-(q @ cand.T), axis=1)[:, :k + 1]
        for w, row in zip(chunk, top):
            out[w] = [vocab[candidates[j]] for j in row if vocab[candidates[j]] != w][:k]
    return out


def augment_text(text: str, rng: np.random.RandomState, neighbours: Dict[str, List[str]],
                 cfg: AugmentConfig) -> str:
    """One augmented copy of ``text`` (words are whitespace-separated, matched lower-cased)."""
    words = text.split()
    out = []
    for w in words:
        r = rng.rand()
        if r < cfg.p_mask:
            out.append(MASK_WORD)
        elif r < cfg.p_mask + cfg.p_neighbour and neighbours.get(w.lower()):
            options = neighbours[w.lower()]
            out.append(options[rng.randint(len(options))])
        else:
            out.append(w)
    if len(out) > 1 and rng.rand() < cfg.p_ngram:
        n = rng.randint(1, min(5, len(out)) + 1)
        start = rng.randint(len(out) - n + 1)
        out = out[start:start + n]
    return " ".join(out)


def augment_texts(texts: Sequence[str], cfg: AugmentConfig,
                  neighbours: Dict[str, List[str]]) -> List[str]:
    """``cfg.augment_copies`` deterministic copies of every text, copies that equal their
    source dropped."""
    rng = np.random.RandomState(cfg.augment_seed)
    out = []
    for text in texts:
        for _ in range(cfg.augment_copies):
            new = augment_text(text, rng, neighbours, cfg)
            if new and new != text:
                out.append(new)
    return out
