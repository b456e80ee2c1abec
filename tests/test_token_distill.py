"""Token-level distillation (language models; the hooks token classification reuses): the
loss against numpy on tiny cases, the per-position teacher cache, and a student that moves
toward its teacher."""
import numpy as np
import pytest
import tensorflow as tf

import tf_keras as keras

from slm_tf.distill.distiller import STUDENT_IDS, Distiller
from slm_tf.distill.losses import (kd_loss, sparse_kd_loss, token_distillation_loss,
                                   top_k_buckets)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_token_loss_masks_padding_and_unlabeled_positions_by_hand():
    rng = np.random.default_rng(1)
    student = rng.normal(size=(2, 4, 6)).astype("float32")
    teacher = 3 * rng.normal(size=(2, 4, 6)).astype("float32")
    labels = np.array([[1, -1, 3, 0], [5, 2, 0, 0]])  # -1: no hard label (soft term only)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32)  # 0: padding
    t = 1.5
    ce = -np.take_along_axis(_log_softmax(student), np.maximum(labels, 0)[..., None], -1)[..., 0]
    known = mask * (labels >= 0)
    expected_ce = (ce * known).sum() / known.sum()  # 4 labelled real positions
    lt, ls = _log_softmax(teacher / t), _log_softmax(student / t)
    kl = (np.exp(lt) * (lt - ls)).sum(-1) * t * t
    expected_kd = (kl * mask).sum() / mask.sum()  # 5 real positions
    loss, ce_t, kd_t = token_distillation_loss(labels, mask, teacher, student, t, 0.25)
    assert float(ce_t) == pytest.approx(expected_ce, rel=1e-5)
    assert float(kd_t) == pytest.approx(expected_kd, rel=1e-5)
    assert float(loss) == pytest.approx(0.25 * expected_ce + 0.75 * expected_kd, rel=1e-5)
    # Changing what sits at padded positions changes nothing.
    noisy = student.copy()
    noisy[mask == 0] = 50.0
    assert float(token_distillation_loss(labels, mask, teacher, noisy, t, 0.25)[0]) == \
        pytest.approx(float(loss), rel=1e-6)


def _buckets_by_hand(logits, top):
    """float64 log-probabilities of the top classes and of the rest (numpy oracle)."""
    logits = logits.astype(np.float64)
    p = np.exp(_log_softmax(logits))
    top_p = np.take_along_axis(p, top, -1)
    outside = np.ones_like(p, bool)
    np.put_along_axis(outside, top, False, -1)
    rest = np.where(outside, p, 0.0).sum(-1)
    return np.log(top_p), np.log(rest)


def _tempered(log_buckets, t):
    return _log_softmax(log_buckets / t)


def test_top_k_kd_is_the_kl_of_the_k_classes_and_the_rest_by_hand():
    rng = np.random.default_rng(2)
    student = rng.normal(size=(3, 7)).astype("float32")
    teacher = 2 * rng.normal(size=(3, 7)).astype("float32")
    k, t = 3, 2.0
    top = np.argsort(-teacher, -1)[:, :k]
    t_top, t_rest = _buckets_by_hand(teacher, top)
    s_top, s_rest = _buckets_by_hand(student, top)
    lt = _tempered(np.concatenate([t_top, t_rest[:, None]], -1), t)
    ls = _tempered(np.concatenate([s_top, s_rest[:, None]], -1), t)
    expected = t * t * (np.exp(lt) * (lt - ls)).sum(-1)
    buckets = np.concatenate([t_top, t_rest[:, None]], -1).astype(np.float32)
    np.testing.assert_allclose(sparse_kd_loss(top, buckets, student, t).numpy(), expected,
                               rtol=1e-5)
    # The cache writer's buckets are the same numbers.
    np.testing.assert_allclose(top_k_buckets(teacher, top).numpy(), buckets, rtol=1e-5,
                               atol=1e-6)


def test_top_k_kd_with_k_equal_to_the_vocabulary_is_the_full_kl():
    rng = np.random.default_rng(3)
    student = rng.normal(size=(2, 4, 7)).astype("float32")
    teacher = 2 * rng.normal(size=(2, 4, 7)).astype("float32")
    t = 2.0
    full_top = np.argsort(-teacher, -1)
    lt, ls = _log_softmax(teacher / t), _log_softmax(student / t)
    full = t * t * (np.exp(lt) * (lt - ls)).sum(-1)
    buckets = top_k_buckets(teacher, full_top)
    assert buckets.shape == (2, 4, 7)  # no rest bucket when the k are every class
    np.testing.assert_allclose(sparse_kd_loss(full_top, buckets, student, t).numpy(), full,
                               rtol=1e-5)
    np.testing.assert_allclose(kd_loss(teacher, student, t).numpy(), full, rtol=1e-5)


def test_top_k_kd_leaves_a_student_equal_to_its_teacher_alone():
    """KL(p || p) = 0 with zero gradient, however little of the mass the top k hold. A
    teacher renormalized over its top k (the earlier loss) pushed such a student to move the
    mass outside the k onto them: loss T^2 * -log(mass of the k at T) > 0."""
    rng = np.random.default_rng(4)
    teacher = rng.normal(size=(4, 50)).astype("float32")  # flat: the top 5 hold ~20%
    top = np.argsort(-teacher, -1)[:, :5]
    buckets = top_k_buckets(teacher, top)
    student = tf.Variable(teacher)
    for t in (1.0, 2.0):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(sparse_kd_loss(top, buckets, student, t))
        assert abs(float(loss)) < 1e-5
        assert float(tf.reduce_max(tf.abs(tape.gradient(loss, student)))) < 1e-5


def test_rest_bucket_is_exact_when_the_top_k_hold_nearly_everything():
    logits = np.array([[30.0, 10.0, 0.0, -1.0, -2.0]], np.float32)  # rest ~ e^-30
    top = np.array([[0, 1]])
    _, rest = _buckets_by_hand(logits, top)
    got = top_k_buckets(logits, top).numpy()[0, -1]
    assert got == pytest.approx(rest[0], rel=1e-5)  # log(1 - sum p_top) would give -inf


def _tiny_lm(width, layers, seed, vocab=12, context=8):
    from slm_tf.models import ModelConfig, build_model
    keras.utils.set_random_seed(seed)
    return build_model(ModelConfig(model="gpt", hidden_dim=width, num_layers=layers,
                                   num_heads=2, ff_dim=2 * width, dropout=0.0),
                       vocab, vocab, context)


def _blocks(n=64, context=8, vocab=12, seed=0):
    ids = np.random.default_rng(seed).integers(1, 12, size=(n, context + 1)).astype(np.int32)
    mask = np.ones((n, context), np.float32)
    mask[::4, -3:] = 0.0  # some padded tails
    return ids[:, :-1], ids[:, 1:], mask


def test_token_cache_round_trips_full_and_top_k(tmp_path):
    from slm_tf.distill.distiller import TEACHER_LOGITS, TEACHER_TOP_IDS
    from slm_tf.distill.token_cache import cached_token_outputs
    teacher = _tiny_lm(16, 1, seed=3)
    for w in teacher.trainable_weights:  # a peaked teacher, so the top-k order is clear
        w.assign(w * 8.0)
    ids, labels, mask = _blocks(n=10)
    logits = teacher(ids).numpy()
    full = next(iter(cached_token_outputs(str(tmp_path / "full.tfrecord"), teacher,
                                          (ids, labels, mask), 12, 0).batch(10)))
    np.testing.assert_array_equal(full[0][STUDENT_IDS].numpy(), ids)
    np.testing.assert_array_equal(full[1].numpy(), labels)
    np.testing.assert_array_equal(full[2].numpy(), mask)
    np.testing.assert_allclose(full[0][TEACHER_LOGITS].numpy().astype(np.float32), logits,
                               rtol=2e-3, atol=2e-3)  # float16 storage
    top = next(iter(cached_token_outputs(str(tmp_path / "top.tfrecord"), teacher,
                                         (ids, labels, mask), 12, 4).batch(10)))
    top_ids = top[0][TEACHER_TOP_IDS].numpy()
    np.testing.assert_array_equal(top_ids[..., 0], logits.argmax(-1))
    # k = 4 log-probabilities and the log of the mass outside them (float16 storage).
    t_top, t_rest = _buckets_by_hand(logits, top_ids)
    cached = top[0][TEACHER_LOGITS].numpy().astype(np.float32)
    assert cached.shape == (10, 8, 5)
    np.testing.assert_allclose(cached[..., :4], t_top, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(cached[..., 4], t_rest, rtol=2e-3, atol=2e-3)


@pytest.mark.integration  # trains for half a minute on a loaded machine
def test_student_moves_toward_teacher_from_cached_outputs(tmp_path):
    from slm_tf.distill.lm import teacher_agreement
    from slm_tf.distill.token_cache import cached_token_outputs
    teacher = _tiny_lm(16, 2, seed=5)
    for w in teacher.trainable_weights:  # far from uniform: there is something to learn
        w.assign(w * 6.0)
    student = _tiny_lm(8, 1, seed=6)
    ids, labels, mask = _blocks(n=64)
    stream = np.concatenate([ids[:, 0], ids[-1]])  # any token stream to score on
    before = teacher_agreement(student, teacher, stream, 8)["kl_teacher_student"]
    ds = cached_token_outputs(str(tmp_path / "c.tfrecord"), teacher, (ids, labels, mask), 12, 0)
    distiller = Distiller(student, None, temperature=1.0, alpha=0.0)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = distiller.fit(ds.batch(16).repeat(), steps_per_epoch=30, epochs=2, verbose=0)
    after = teacher_agreement(student, teacher, stream, 8)["kl_teacher_student"]
    assert after < 0.6 * before, (before, after)
    assert history.history["kd_loss"][-1] < history.history["kd_loss"][0]


def test_student_equal_to_its_teacher_has_no_kd_loss_through_a_top_k_cache(tmp_path):
    """Through the whole cached path (writer, reader, Distiller), a student that is its
    teacher scores KD loss ~0 against a top-3 cache, while its teacher puts ~half of its mass
    outside the 3. A teacher renormalized over its top k (the earlier cache) scored it
    T^2 * -log(mass of the k at T) and pushed that mass onto the k."""
    from slm_tf.distill.token_cache import cached_token_outputs
    teacher = _tiny_lm(16, 1, seed=8)
    for w in teacher.trainable_weights:
        w.assign(w * 3.0)
    student = _tiny_lm(16, 1, seed=9)
    student.set_weights(teacher.get_weights())
    ids, labels, mask = _blocks(n=32)
    p = np.exp(_log_softmax(teacher(ids).numpy().astype(np.float64)))
    outside = 1.0 - np.sort(p, -1)[..., -3:].sum(-1).mean()
    assert 0.2 < outside < 0.8, outside  # much of the teacher's mass is outside its top 3
    ds = cached_token_outputs(str(tmp_path / "k3.tfrecord"), teacher, (ids, labels, mask), 12, 3)
    distiller = Distiller(student, None, temperature=2.0, alpha=0.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.01))
    logs = distiller.evaluate(ds.batch(16), verbose=0, return_dict=True)
    assert logs["kd_loss"] < 2e-3 and logs["agreement"] == 1.0, logs  # float16 storage


@pytest.mark.integration  # two tfmot stages: tens of seconds on a loaded machine
def test_lm_compresses_with_2_4_pruning_then_qat(tmp_path):
    """compress_model on a tiny GPT: every prunable kernel (tied embedding, the attention
    projections, the feed-forward) is pruned 2:4 by tfmot, and the QAT graph that follows
    keeps the zeros."""
    from slm_tf.compress.config import CompressConfig
    from slm_tf.compress.modes import compress_model
    from slm_tf.compress.quantization import is_quantized, quantize_scope
    from slm_tf.compress.report import layer_sparsity
    ids, labels, mask = _blocks(n=32)
    model = _tiny_lm(16, 1, seed=7)

    def fit_stage(wrapped, stage, epochs):
        wrapped.compile(optimizer=keras.optimizers.Adam(1e-3),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        wrapped.fit(ids, labels, batch_size=16, epochs=epochs, verbose=0,
                    callbacks=stage.callbacks(str(tmp_path / stage.name)))
    cfg = CompressConfig(run_dir="x", prune=0.5, structured="2:4", prune_schedule="constant",
                         qat=True)
    with quantize_scope():
        out, stages = compress_model(model, cfg, fit_stage, 2, 1, sample_ids=ids)
    assert [s.name for s in stages] == ["prune", "qat"] and is_quantized(out)
    assert set(stages[0].plan) == {"token_embedding", "block0_attention", "block0_ffn_in",
                                   "block0_ffn_out"}
    rows = layer_sparsity(out, m_by_n=(2, 4))
    assert {r["layer"] for r in rows} == set(stages[0].plan)
    for row in rows:
        assert row["sparsity"] == pytest.approx(0.5) and row["follows_2:4"], row
    assert np.isfinite(out(ids[:4]).numpy()).all()


def test_lm_student_inherits_the_teachers_corpus_and_lm_defaults(tmp_path):
    import json
    from slm_tf.distill.run import inherited_flags
    data = {"data": "corpus/", "test_data": "a.txt", "max_seq_len": 96, "batch_size": 8}
    for task in ("lm", "classification"):
        (tmp_path / task).mkdir()
        (tmp_path / task / "config.json").write_text(json.dumps(
            {"train": {"task": task}, "data": data}))
    lm = inherited_flags(str(tmp_path / "lm"))
    assert {k: lm[k] for k in data} == data  # the teacher's data section wins
    assert lm["task"] == "lm" and lm["model"] == "gpt" and lm["tokenizer"] == "char_exact"
    assert inherited_flags(str(tmp_path / "classification")) == {}
    # A student recipe without a corpus (bench_distill.py) trains on the teacher's.
    from slm_tf.distill.run import student_configs
    recipe = tmp_path / "student.flags"
    recipe.write_text("--hidden_dim=48\n--max_seq_len=64\n--nobaseline\n", encoding="utf-8")
    dcfg, tok, model, tcfg = student_configs(str(tmp_path / "lm"), str(recipe),
                                             ["--seed=3", f"--output_dir={tmp_path}/s"])
    assert (dcfg.data, dcfg.test_data, dcfg.batch_size) == ("corpus/", "a.txt", 8)
    assert dcfg.max_seq_len == 64 and model.hidden_dim == 48 and model.model == "gpt"
    assert (tok.tokenizer, tcfg.task, tcfg.seed, tcfg.baseline) == ("char_exact", "lm", 3, False)


def test_tagging_distiller_reports_the_epochs_entity_tag_f1_by_hand():
    """NER distillation picks its best epoch by entity-tag F1 (micro over the epoch, tagged
    real positions only): on entity-sparse data token accuracy prefers an all-O student."""
    import tensorflow as tf
    from slm_tf.distill.distiller import TEACHER_LOGITS
    tags, vocab = 3, 6
    # The student tags token id v with tag PRED[v] (its logits are an embedding row).
    pred_of_id = np.array([0, 1, 2, 0, 1, 0])
    student = keras.Sequential([keras.layers.Embedding(
        vocab, tags, embeddings_initializer=keras.initializers.Constant(
            10.0 * np.eye(tags)[pred_of_id]))])
    ids = np.array([[1, 2, 3, 4, 0], [5, 1, 2, 3, 0], [3, 3, 4, 1, 2], [2, 0, 0, 0, 0]])
    labels = np.array([[1, 0, 0, 1, -1], [0, 1, 2, 0, -1], [0, 2, 1, 1, 2], [2, -1, 0, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]],
                    np.float32)
    pred = pred_of_id[ids]
    real = (mask > 0) & (labels >= 0)
    gold_e, pred_e = real & (labels > 0), real & (pred > 0)
    hits = (gold_e & (pred == labels)).sum()
    expected = 2.0 * hits / (gold_e.sum() + pred_e.sum())
    teacher = np.random.default_rng(0).normal(size=(4, 5, tags)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices(
        ({STUDENT_IDS: ids, TEACHER_LOGITS: teacher}, labels, mask)).batch(2)  # two batches
    distiller = Distiller(student, None, temperature=1.0, alpha=0.5, entity_tag_f1=True)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = distiller.evaluate(ds, return_dict=True, verbose=0)
    assert 0 < expected < 1 and logs["entity_tag_f1"] == pytest.approx(expected, rel=1e-6)
    # Without the switch the metric is absent (LM distillation has no entity tags).
    plain = Distiller(student, None, temperature=1.0, alpha=0.5)
    plain.compile(optimizer=keras.optimizers.SGD(0.0))
    assert "entity_tag_f1" not in plain.evaluate(ds, return_dict=True, verbose=0)
