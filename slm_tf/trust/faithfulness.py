"""Deletion test of explanation faithfulness: removing the k highest-attributed tokens should
lower the predicted class's probability more than removing k random tokens."""
from typing import Dict, List

import numpy as np
from absl import logging

from slm_tf.trust.explain import IntegratedGradients


def _without(ids: np.ndarray, n_words: int, drop) -> np.ndarray:
    """The row with word positions ``drop`` (0-based among the words) removed and re-padded."""
    words = [w for i, w in enumerate(ids[1:1 + n_words]) if i not in set(drop)]
    row = np.zeros_like(ids)
    row[:len(words) + 2] = [ids[0], *words, ids[1 + n_words]]
    return row


def deletion_test(ig: IntegratedGradients, rows: np.ndarray, n_words: List[int], k: int = 3,
                  seed: int = 0) -> Dict:
    """For each row with more than ``k`` words: the predicted class's probability drop when its
    top-k attributed words are deleted vs k random words; the share where top-k wins."""
    rng = np.random.default_rng(seed)
    records = []
    for i, (ids, n) in enumerate(zip(rows, n_words)):
        if n <= k:
            continue
        mask = np.zeros(len(ids), np.float32)
        mask[1:1 + n] = 1.0
        r = ig.attribute(ids, mask)
        top = list(np.argsort(-r["per_position"][1:1 + n], kind="stable")[:k])
        rand = list(rng.choice(n, k, replace=False))
        batch = np.stack([ids, _without(ids, n, top), _without(ids, n, rand)])
        p = ig.probabilities(batch, ig.embedding(batch)).numpy()[:, r["label"]]
        records.append({"drop_top": float(p[0] - p[1]), "drop_random": float(p[0] - p[2]),
                        "completeness_gap": abs(float(r["per_position"].sum()) -
                                                (r["probability"] - r["baseline_probability"]))})
        if len(records) % 25 == 0:
            logging.info("deletion test: %d texts", len(records))
    top = np.array([r["drop_top"] for r in records])
    rand = np.array([r["drop_random"] for r in records])
    return {"k": k, "texts": len(records), "skipped_short_texts": len(rows) - len(records),
            "share_top_beats_random": float(np.mean(top > rand)),
            "mean_drop_top": float(top.mean()), "mean_drop_random": float(rand.mean()),
            "median_completeness_gap": float(np.median([r["completeness_gap"]
                                                        for r in records]))}
