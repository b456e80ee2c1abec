"""Trust: temperature scaling, ECE, abstention scores/thresholds/metrics against independent
oracles (sklearn, brute force, hand-computed values), and the in-graph head of exported files."""
import math

import numpy as np
import pytest
import tf_keras as keras
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_score, recall_score

from slm_tf.errors import UserError
from slm_tf.export.onnx import to_onnx
from slm_tf.export.tflite import to_tflite
from slm_tf.models import ModelConfig, build_model
from slm_tf.train.metrics import expected_calibration_error
from slm_tf.trust.abstention import (Target, abstention_metrics, choose_threshold, energy_score,
                                     evaluate_methods, max_prob_score, oos_class_score,
                                     oos_margin_score)
from slm_tf.trust.calibration import fit_temperature
from slm_tf.trust.serving import ServingHead


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("t0", [0.5, 2.5])
def test_temperature_scaling_recovers_a_known_temperature(t0):
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2.0, size=(20000, 10))
    p = _softmax(true_logits)
    labels = np.array([rng.choice(10, p=row) for row in p])
    t = fit_temperature(true_logits * t0, labels)
    assert abs(t - t0) / t0 < 0.05, t


def test_ece_equals_a_hand_computed_value():
    # Confidences 0.9 (correct), 0.9 (wrong), 0.6 (correct), 0.55 (wrong); 15 bins of 1/15:
    # 0.9 falls in (0.8667, 0.9333], 0.6 in (0.5333, 0.6], 0.55 in (0.5333, 0.6] as well.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.55, 0.45]])
    labels = np.array([0, 1, 1, 1])
    # bin 0.9: acc 0.5, conf 0.9 -> 2/4 * 0.4; bin (0.53,0.6]: acc 0.5, conf 0.575 -> 2/4*0.075
    want = 0.5 * 0.4 + 0.5 * 0.075
    assert expected_calibration_error(probs, labels) == pytest.approx(want, abs=1e-12)


def test_ece_matches_sklearn_calibration_curve():
    rng = np.random.default_rng(1)
    probs = _softmax(rng.normal(0, 2, size=(3000, 6)))
    labels = rng.integers(0, 6, 3000)
    conf, correct = probs.max(1), (probs.argmax(1) == labels).astype(int)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=15, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 16)[1:-1], conf), minlength=15)
    counts = counts[counts > 0]
    want = float(np.sum(counts / len(conf) * np.abs(prob_true - prob_pred)))
    assert expected_calibration_error(probs, labels) == pytest.approx(want, abs=1e-9)


def test_scores_match_their_formulas_by_hand():
    z = np.array([[2.0, 0.5, -1.0, 3.0]])  # class 3 is out-of-scope
    t = 1.7
    e = [math.exp(v / t) for v in z[0]]
    assert max_prob_score(z, t, 3)[0] == pytest.approx(1 - max(e[:3]) / sum(e))
    assert max_prob_score(z, t, None)[0] == pytest.approx(1 - max(e) / sum(e))
    assert energy_score(z, t, 3)[0] == pytest.approx(-t * math.log(sum(e[:3])))
    assert oos_class_score(z, t, 3)[0] == pytest.approx(e[3] / sum(e))
    with pytest.raises(UserError, match="out-of-scope class"):
        oos_class_score(z, t, None)
    # log p(oos) - log max in-scope p = (3.0 - 2.0) / t
    assert oos_margin_score(z, t, 3)[0] == pytest.approx(math.log(e[3] / e[0]))
    assert oos_margin_score(z, t, 3)[0] == pytest.approx(1.0 / 1.7)
    with pytest.raises(UserError, match="out-of-scope class"):
        oos_margin_score(z, t, None)


def test_threshold_selection_hits_the_stated_target():
    oos = np.round(np.arange(1, 11) * 0.1, 2)          # 0.1 ... 1.0
    ins = np.array([0.05, 0.15, 0.25])
    scores = np.concatenate([ins, oos])
    is_oos = np.r_[np.zeros(3, bool), np.ones(10, bool)]
    # oos_recall >= 0.8: 8 of 10 OOS above t, so t < 0.3; the largest observed such t is 0.25.
    assert choose_threshold(scores, is_oos, Target.parse("oos_recall:0.8")) == 0.25
    # in_scope_precision >= 0.75 (answered = score <= t): t=0.15 answers 2 in + 1 oos = 0.667,
    # t=0.25 answers 3 in + 2 oos = 0.6, t=0.05 answers 1 in = 1.0 -> 0.05.
    assert choose_threshold(scores, is_oos, Target.parse("in_scope_precision:0.75")) == 0.05
    for bad in ("recall:0.8", "oos_recall:1.5", "oos_recall"):
        with pytest.raises(UserError, match="abstain_target"):
            Target.parse(bad)


def test_in_scope_cost_target_abstains_as_much_as_the_bound_allows():
    ins = np.array([0.05, 0.15, 0.25])
    correct = np.r_[True, False, True, np.zeros(10, bool)]   # in-scope 0.05 and 0.25 are right
    scores = np.concatenate([ins, np.round(np.arange(1, 11) * 0.1, 2)])
    is_oos = np.r_[np.zeros(3, bool), np.ones(10, bool)]
    # Abstaining on the right answer at 0.25 loses 1 of 3 in-scope queries (0.333); losing the
    # one at 0.05 as well (t below 0.05) would lose 2 of 3. So a bound of 0.34 allows every t
    # down to 0.05 and a bound of 0.3 none below 0.25.
    assert choose_threshold(scores, is_oos, Target.parse("in_scope_cost:0.34"), correct) == 0.05
    assert choose_threshold(scores, is_oos, Target.parse("in_scope_cost:0.3"), correct) == 0.25


def test_a_capped_recall_target_reaches_the_recall_unless_the_cost_bound_forbids_it():
    ins = np.array([0.05, 0.15, 0.25])
    correct = np.r_[True, False, True, np.zeros(10, bool)]   # in-scope 0.05 and 0.25 are right
    scores = np.concatenate([ins, np.round(np.arange(1, 11) * 0.1, 2)])
    is_oos = np.r_[np.zeros(3, bool), np.ones(10, bool)]
    pick = lambda text: choose_threshold(scores, is_oos, Target.parse(text), correct)
    # Recall 0.8 needs t < 0.3 (t = 0.25 abstains on no in-scope query): within either bound.
    assert pick("oos_recall:0.8,in_scope_cost:0.3") == 0.25
    # Recall 0.95 needs all 10 OOS, so t < 0.1: the largest such candidate is 0.05, which
    # abstains on the right answer at 0.25 (cost 1/3). A bound of 0.34 allows it; a bound of
    # 0.3 stops at 0.25 (recall 0.8), the bound winning over the recall.
    assert pick("oos_recall:0.95") == 0.05
    assert pick("oos_recall:0.95,in_scope_cost:0.34") == 0.05
    assert pick("oos_recall:0.95,in_scope_cost:0.3") == 0.25
    for bad in ("in_scope_cost:0.02,oos_recall:0.8", "oos_recall:0.8,in_scope_precision:0.9",
                "oos_recall:0.8,in_scope_cost:2"):
        with pytest.raises(UserError, match="abstain_target"):
            Target.parse(bad)


def test_in_scope_cost_target_is_the_most_abstention_within_the_bound_by_brute_force():
    rng = np.random.default_rng(5)
    n_in, n_oos, k = 600, 60, 6
    val_logits = rng.normal(0, 1, (n_in + n_oos, k))
    val_labels = np.r_[rng.integers(0, k - 1, n_in), np.full(n_oos, k - 1)]
    val_logits[np.arange(n_in + n_oos), val_labels] += 1.5
    test_logits, test_labels = val_logits[::-1].copy(), val_labels[::-1].copy()
    out = evaluate_methods(val_logits, val_labels, test_logits, test_labels, 1.3, k - 1,
                           Target.parse("in_scope_cost:0.02"), methods=["oos_margin"])
    t = out["oos_margin"]["threshold"]
    scores = oos_margin_score(val_logits, 1.3, k - 1)
    right = (val_logits[:, :k - 1].argmax(1) == val_labels)[:n_in]   # the in-scope rows
    # Points of in-scope accuracy lost at each candidate threshold, by direct counting.
    cost = {c: 100.0 * (right & (scores[:n_in] > c)).sum() / n_in for c in np.unique(scores)}
    allowed = [c for c, pts in cost.items() if pts <= 2.0 + 1e-9]
    assert t == min(allowed)
    assert 1.5 < cost[t] <= 2.0                                    # the bound is nearly used up


def test_abstention_metrics_match_sklearn_and_brute_force():
    rng = np.random.default_rng(2)
    n_in, n_oos = 400, 100
    scores = np.r_[rng.normal(0, 1, n_in), rng.normal(1.5, 1, n_oos)]
    is_oos = np.r_[np.zeros(n_in, bool), np.ones(n_oos, bool)]
    labels = np.r_[rng.integers(0, 5, n_in), np.full(n_oos, 5)]
    predicted = np.where(rng.random(n_in + n_oos) < 0.8, labels, (labels + 1) % 5)
    t = 0.7
    m = abstention_metrics(scores, labels, is_oos, predicted, t)
    abstain = scores > t
    assert m["oos_recall"] == pytest.approx(recall_score(is_oos, abstain))
    assert m["oos_precision"] == pytest.approx(precision_score(is_oos, abstain))
    # AUROC by counting pairs (Mann-Whitney).
    pairs = (scores[is_oos][:, None] > scores[~is_oos][None, :]).mean()
    assert m["auroc"] == pytest.approx(pairs)
    # FPR at 95% in-scope recall: the smallest threshold accepting >= 95% of in-scope examples.
    s_in = np.sort(scores[~is_oos])
    t95 = s_in[math.ceil(0.95 * n_in) - 1]
    assert m["fpr_at_95_in_scope_recall"] == pytest.approx((scores[is_oos] <= t95).mean())
    ok = (predicted == labels)[~is_oos]
    assert m["in_scope_accuracy_without_abstention"] == pytest.approx(ok.mean())
    assert m["in_scope_accuracy"] == pytest.approx((ok & ~abstain[~is_oos]).mean())


@pytest.mark.integration  # three real conversions (TFLite + ONNX): tens of seconds
@pytest.mark.parametrize("method", ["max_prob", "energy", "oos_class", "oos_margin"])
def test_exported_files_output_calibrated_probabilities_and_the_abstain_flag(method, tmp_path):
    from slm_tf.export.runtimes import open_runtime
    from ai_edge_litert.interpreter import Interpreter
    import onnxruntime as ort
    keras.utils.set_random_seed(0)
    seq, n = 10, 5
    model = build_model(ModelConfig(model="bow", embedding_dim=16, hidden_dim=16), 50, n, seq)
    ids = np.random.default_rng(0).integers(4, 50, size=(12, seq)).astype(np.int32)
    raw = model(ids, training=False).numpy().astype(np.float64) * 20  # spread the scores
    model.layers[-1].set_weights([w * 20 for w in model.layers[-1].get_weights()])
    t, oos = 2.5, 4
    score = {"max_prob": max_prob_score, "energy": energy_score,
             "oos_class": oos_class_score, "oos_margin": oos_margin_score}[method](raw, t, oos)
    threshold = float(np.median(score))
    head = ServingHead(t, {"method": method, "threshold": threshold, "oos_index": oos})
    want_p = _softmax(raw / t)
    runner = Interpreter(model_content=to_tflite(model, "float", seq, head=head)) \
        .get_signature_runner()
    got = [runner(ids=row[None]) for row in ids]
    np.testing.assert_allclose(np.concatenate([g["probabilities"] for g in got]), want_p,
                               atol=1e-5)
    np.testing.assert_allclose(np.concatenate([g["oos_score"] for g in got]), score,
                               rtol=1e-4, atol=1e-4)
    flags = np.concatenate([g["abstain"] for g in got])
    near = np.abs(score - threshold) < 1e-4  # float32 vs float64 at the boundary
    np.testing.assert_array_equal(flags[~near], (score > threshold)[~near].astype(np.float32))
    sess = ort.InferenceSession(to_onnx(model, seq, head), providers=["CPUExecutionProvider"])
    onnx_p, onnx_abstain = sess.run(["probabilities", "abstain"], {"ids": ids})
    np.testing.assert_allclose(onnx_p, want_p, atol=1e-5)
    np.testing.assert_array_equal(onnx_abstain[~near], flags[~near])


@pytest.mark.integration  # int8 calibration + conversion: tens of seconds
@pytest.mark.parametrize("method", ["max_prob", "energy", "oos_margin"])
def test_int8_tflite_keeps_the_abstain_output_with_builtin_ops(method):
    from ai_edge_litert.interpreter import Interpreter
    keras.utils.set_random_seed(0)
    seq = 10
    model = build_model(ModelConfig(model="bow", embedding_dim=16, hidden_dim=16), 50, 5, seq)
    ids = np.random.default_rng(0).integers(4, 50, size=(40, seq)).astype(np.int32)
    model.layers[-1].set_weights([w * 20 for w in model.layers[-1].get_weights()])  # spread
    raw = model(ids, training=False).numpy().astype(np.float64)
    score = {"max_prob": max_prob_score, "energy": energy_score,
             "oos_margin": oos_margin_score}[method](raw, 1.5, 4)
    threshold = float(np.median(score))
    head = ServingHead(1.5, {"method": method, "threshold": threshold, "oos_index": 4})
    interp = Interpreter(model_content=to_tflite(model, "int8", seq, ids, head=head))
    ops = {op["op_name"] for op in interp._get_ops_details()}
    assert not any(op.startswith(("Flex", "CUSTOM")) for op in ops), ops
    runner = interp.get_signature_runner()
    out = [runner(ids=row[None]) for row in ids]
    assert set(out[0]) == {"logits", "probabilities", "oos_score", "abstain"}
    got = np.concatenate([o["oos_score"] for o in out])
    # int8 keeps the score close to the float one (a -1e4 mask would blow its range up) ...
    # a few int8 steps; int8 logsumexp is coarser than a softmax max
    tol = (0.015 if method == "max_prob" else 0.1) * max(1.0, float(np.abs(score).max()))
    assert score.max() - score.min() > tol  # the scores do spread
    assert np.abs(got - score).max() <= tol, np.abs(got - score).max()
    # ... and the flag is the in-graph comparison of that score.
    flags = np.concatenate([o["abstain"] for o in out])
    # int8 may compare quantized values: skip scores within a step of the threshold.
    clear = np.abs(got - threshold) > 0.01 * max(1.0, float(np.abs(score).max()))
    assert clear.sum() >= 10
    np.testing.assert_array_equal(flags[clear], (got > threshold)[clear].astype(np.float32))
