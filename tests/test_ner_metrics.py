"""Entity metrics against seqeval (the reference implementation) and hand-computed values."""
import random

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from slm_tf.ner import metrics, schemes
from slm_tf.ner.schemes import Span

TYPES = ["PER", "LOC", "ORG"]


def _random_tags(rng, scheme, n):
    prefixes = list(schemes.SCHEMES[scheme])
    return [rng.choice(["O", "O", "O"] + [f"{rng.choice(prefixes)}-{rng.choice(TYPES)}"])
            for _ in range(n)]


def _valid_tags(rng, scheme, n):
    spans, i = [], 0
    while i < n:
        length = rng.randint(1, 3)
        if rng.random() < 0.35 and i + length <= n:
            spans.append(Span(i, i + length, rng.choice(TYPES)))
            i += length
        else:
            i += 1
    return schemes.spans_to_tags(spans, n, scheme)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_entity_scores_equal_seqeval_on_random_predictions(seed, scheme):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 15) for _ in range(60)]
    gold = [_valid_tags(rng, scheme, n) for n in lengths]
    # Predictions: half noisy copies of gold, half random (often invalid) tag strings.
    pred = []
    for g in gold:
        if rng.random() < 0.5:
            pred.append([t if rng.random() < 0.8 else _random_tags(rng, scheme, 1)[0] for t in g])
        else:
            pred.append(_random_tags(rng, scheme, len(g)))
    ours = metrics.tag_report(gold, pred, scheme)
    assert ours["precision"] == pytest.approx(precision_score(gold, pred))
    assert ours["recall"] == pytest.approx(recall_score(gold, pred))
    assert ours["f1"] == pytest.approx(f1_score(gold, pred))
    ref = classification_report(gold, pred, output_dict=True, zero_division=0)
    for t in TYPES:
        assert ours["per_type"][t]["f1"] == pytest.approx(ref[t]["f1-score"])
        assert ours["per_type"][t]["support"] == ref[t]["support"]
    assert 0.0 < ours["f1"] < 1.0


def test_hand_computed_report():
    gold = [[Span(0, 2, "PER"), Span(3, 4, "LOC")], [Span(1, 3, "ORG")]]
    pred = [[Span(0, 2, "PER"), Span(3, 4, "ORG")], [Span(1, 2, "ORG"), Span(5, 6, "PER")]]
    r = metrics.entity_report(gold, pred)
    assert (r["precision"], r["recall"]) == (0.25, 1 / 3)
    assert r["f1"] == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))
    assert r["per_type"]["PER"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3),
                                    "support": 1, "predicted": 2}
    labels = r["type_confusion"]["labels"]
    assert labels == ["LOC", "ORG", "PER", "O"]
    m = {(labels[i], labels[j]): v for i, row in enumerate(r["type_confusion"]["matrix"])
         for j, v in enumerate(row) if v}
    # LOC predicted as ORG on the same span; ORG missed (its prediction has another span);
    # two spurious predictions.
    assert m == {("PER", "PER"): 1, ("LOC", "ORG"): 1, ("ORG", "O"): 1, ("O", "ORG"): 1,
                 ("O", "PER"): 1}


def test_token_accuracy():
    assert metrics.token_accuracy([["O", "B-PER"], ["O"]], [["O", "O"], ["O"]]) == 2 / 3
