"""Entity-level scores: precision/recall/F1 on exact (span, type) matches, micro and per type,
token accuracy, and a confusion of types.

Computed on spans (characters or tokens) rather than tag strings, so any scheme, and models
with different tokenizations of the same text, are scored alike; ``seqeval`` (a dev-only
dependency) is the cross-check in the tests.
"""
from typing import Dict, Iterable, List, Optional, Sequence

from slm_tf.ner.schemes import OUTSIDE, Span, tags_to_spans


def _prf(tp: int, n_pred: int, n_gold: int) -> Dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def entity_report(gold: Sequence[Iterable[Span]], pred: Sequence[Iterable[Span]],
                  types: Optional[Iterable[str]] = None) -> Dict:
    """Scores predicted entity spans against gold ones, sentence by sentence."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    gold_sets = [set(g) for g in gold]
    pred_sets = [set(p) for p in pred]
    all_types = sorted(set(types or ()) | {s.type for g in gold_sets for s in g}
                       | {s.type for p in pred_sets for s in p})
    counts = {t: [0, 0, 0] for t in all_types}  # tp, predicted, gold
    labels = all_types + [OUTSIDE]
    index = {t: i for i, t in enumerate(labels)}
    # confusion[gold type][predicted type] over spans; O = no entity with that exact span.
    confusion = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold_sets, pred_sets):
        for s in g:
            counts[s.type][2] += 1
        for s in p:
            counts[s.type][1] += 1
        for s in g & p:
            counts[s.type][0] += 1
        pred_type = {(s.start, s.end): s.type for s in p}
        gold_type = {(s.start, s.end): s.type for s in g}
        for key, t in gold_type.items():
            confusion[index[t]][index[pred_type.get(key, OUTSIDE)]] += 1
        for key, t in pred_type.items():
            if key not in gold_type:
                confusion[index[OUTSIDE]][index[t]] += 1
    tp, n_pred, n_gold = (sum(c[i] for c in counts.values()) for i in range(3))
    per_type = {t: {**_prf(*c), "support": c[2], "predicted": c[1]} for t, c in counts.items()}
    with_support = [v for v in per_type.values() if v["support"]]
    macro = (sum(v["f1"] for v in with_support) / len(with_support)) if with_support else 0.0
    return {**_prf(tp, n_pred, n_gold), "macro_f1": macro, "num_entities": n_gold,
            "num_predicted": n_pred, "per_type": per_type,
            "type_confusion": {"labels": labels, "matrix": confusion}}


def token_accuracy(gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> float:
    """Fraction of tagged positions whose predicted tag equals the gold tag."""
    pairs = [(g, p) for gs, ps in zip(gold_tags, pred_tags) for g, p in zip(gs, ps)]
    return sum(g == p for g, p in pairs) / len(pairs) if pairs else 0.0


def tag_report(gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]],
               scheme: str, types: Optional[Iterable[str]] = None) -> Dict:
    """Entity scores (predicted tags decoded leniently) plus token accuracy, from tag lists."""
    for i, (g, p) in enumerate(zip(gold_tags, pred_tags)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
    report = entity_report([tags_to_spans(t, scheme) for t in gold_tags],
                           [tags_to_spans(t, scheme) for t in pred_tags], types)
    report["token_accuracy"] = token_accuracy(gold_tags, pred_tags)
    return report


def span_lists(examples) -> List[List[Span]]:
    """The gold character spans of each example (``NerExample``)."""
    return [list(e.spans) for e in examples]
