"""Distillation: the KD loss by hand, its limits, a frozen teacher, a student that saves alone,
cached vs online teacher outputs, augmentation."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from slm_tf.distill import Distiller, distillation_loss, kd_loss
from slm_tf.distill.augment import (MASK_WORD, AugmentConfig, augment_texts,
                                    embedding_neighbours)
from slm_tf.distill.cache import read_cache, write_cache
from slm_tf.models import ModelConfig, build_model


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_kd_loss_equals_hand_computed_value():
    t = np.array([[2.0, 1.0, 0.0], [0.0, 0.5, 3.0]], np.float32)
    s = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 2.0]], np.float32)
    T = 2.0
    p, q = _softmax(t / T), _softmax(s / T)
    want = T * T * (p * (np.log(p) - np.log(q))).sum(-1)
    np.testing.assert_allclose(kd_loss(t, s, T).numpy(), want, rtol=1e-5)
    # first row by hand: p = softmax([1, .5, 0]), q = uniform
    p0 = np.exp([1, .5, 0]) / np.exp([1, .5, 0]).sum()
    assert kd_loss(t[:1], s[:1], T).numpy()[0] == pytest.approx(
        4 * sum(pi * np.log(pi * 3) for pi in p0), rel=1e-5)
    total, ce, kd = distillation_loss(np.array([0, 2]), t, s, T, 0.3)
    ce_want = -np.log(_softmax(s)[[0, 1], [0, 2]]).mean()
    assert float(ce) == pytest.approx(ce_want, rel=1e-5)
    assert float(total) == pytest.approx(0.3 * ce_want + 0.7 * want.mean(), rel=1e-5)


def test_alpha_one_is_plain_cross_entropy_and_t1_kd_is_kl():
    rng = np.random.RandomState(0)
    t, s = rng.randn(8, 5).astype("float32"), rng.randn(8, 5).astype("float32")
    y = rng.randint(0, 5, 8)
    total, ce, _ = distillation_loss(y, t, s, 1.0, 1.0)
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, s)
    assert float(total) == pytest.approx(float(plain), rel=1e-5)
    kl = keras.losses.KLDivergence()(_softmax(t), _softmax(s))
    assert float(tf.reduce_mean(kd_loss(t, s, 1.0))) == pytest.approx(float(kl), rel=1e-4)


def test_unlabeled_rows_get_only_the_soft_term():
    t = np.array([[3.0, 0.0], [0.0, 3.0]], np.float32)
    s = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    _, ce_all, _ = distillation_loss(np.array([0, -1]), t, s, 2.0, 0.5)
    _, ce_one, _ = distillation_loss(np.array([0]), t[:1], s[:1], 2.0, 0.5)
    assert float(ce_all) == pytest.approx(float(ce_one))


def _toy(seed=0, n=256, vocab=60, length=10, classes=3):
    rng = np.random.RandomState(seed)
    ids = rng.randint(5, vocab, (n, length)).astype("int32")
    y = (ids[:, 0] % classes).astype("int32")
    return ids, y


def test_teacher_frozen_and_student_saves_alone(tmp_path):
    ids, y = _toy()
    teacher = build_model(ModelConfig(model="cnn", embedding_dim=16, num_filters=8,
                                      hidden_dim=0), 60, 3, 10)
    student = build_model(ModelConfig(model="bow", embedding_dim=8, hidden_dim=8), 60, 3, 10)
    before = [w.copy() for w in teacher.get_weights()]
    student_before = [w.copy() for w in student.get_weights()]
    d = Distiller(student, teacher, temperature=3.0, alpha=0.5)
    d.compile(optimizer=keras.optimizers.Adam(1e-2))
    d.fit({"student_ids": ids, "teacher_ids": ids}, y, epochs=2, batch_size=32, verbose=0)
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(student_before, student.get_weights()))
    path = str(tmp_path / "student.keras")
    student.save(path)
    again = keras.models.load_model(path)
    assert len(again.weights) == len(student.weights)
    np.testing.assert_allclose(again.predict(ids, verbose=0), student.predict(ids, verbose=0),
                               atol=1e-6)


def test_cached_logits_train_the_same_as_the_online_teacher(tmp_path):
    ids, y = _toy(1)
    teacher = build_model(ModelConfig(model="bow", embedding_dim=8, hidden_dim=8), 60, 3, 10)
    logits = teacher.predict(ids, verbose=0)
    path = str(tmp_path / "cache.tfrecord")
    texts = [" ".join(map(str, row)) for row in ids]
    write_cache(path, texts, y, logits)
    rows = list(read_cache(path, 3).as_numpy_iterator())
    assert [r[0].decode() for r in rows] == texts and [int(r[1]) for r in rows] == list(y)
    np.testing.assert_array_equal(np.stack([r[2] for r in rows]), logits)
    results = []
    for inputs in ({"student_ids": ids, "teacher_ids": ids},
                   {"student_ids": ids, "teacher_logits": np.stack([r[2] for r in rows])}):
        keras.utils.set_random_seed(3)
        student = build_model(ModelConfig(model="bow", embedding_dim=8, hidden_dim=8), 60, 3, 10)
        d = Distiller(student, teacher if "teacher_ids" in inputs else None, 2.0, 0.5)
        d.compile(optimizer=keras.optimizers.SGD(0.1))
        d.fit(inputs, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
        results.append(student.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_augmentation_masks_replaces_and_samples_ngrams():
    vocab = ["[PAD]", "[UNK]", "card", "cards", "atm", "money", "cash", "##s", "!"]
    emb = np.eye(len(vocab), dtype="float32")
    emb[3] = emb[2] + 0.1  # cards ~ card
    emb[6] = emb[5] + 0.1  # cash ~ money
    nb = embedding_neighbours(vocab, emb, ["card", "money", "zzz"], k=1)
    assert nb == {"card": ["cards"], "money": ["cash"]}
    texts = ["my card has no money left today"] * 50
    out = augment_texts(texts, AugmentConfig(augment_copies=2, p_mask=0.2, p_neighbour=0.3,
                                             p_ngram=0.3, augment_seed=1), nb)
    again = augment_texts(texts, AugmentConfig(augment_copies=2, p_mask=0.2, p_neighbour=0.3,
                                               p_ngram=0.3, augment_seed=1), nb)
    assert out == again and 50 < len(out) <= 100
    joined = " ".join(out)
    assert MASK_WORD in joined and ("cards" in joined or "cash" in joined)
    assert any(len(t.split()) < 7 and MASK_WORD not in t for t in out)  # n-gram samples


def test_feature_distillation_online_and_cached_agree(tmp_path):
    from slm_tf.distill import with_features
    ids, y = _toy(2)
    teacher = build_model(ModelConfig(model="transformer", hidden_dim=16, ff_dim=32), 60, 3, 10)
    logits, feats = with_features(teacher).predict(ids, verbose=0)
    assert feats.shape == (256, 16)
    path = str(tmp_path / "c.tfrecord")
    write_cache(path, [str(i) for i in range(len(ids))], y, logits, feats)
    rows = list(read_cache(path, 3, 16).as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([r[3] for r in rows]), feats)
    histories, weights = [], []
    for inputs in ({"student_ids": ids, "teacher_ids": ids},
                   {"student_ids": ids, "teacher_logits": logits, "teacher_features": feats}):
        keras.utils.set_random_seed(5)
        student = build_model(ModelConfig(model="bow", embedding_dim=8, hidden_dim=8), 60, 3, 10)
        online = "teacher_ids" in inputs
        d = Distiller(student, teacher if online else None, 2.0, 0.5, feature_weight=1.0,
                      teacher_feature_dim=None if online else 16)
        d.compile(optimizer=keras.optimizers.Adam(1e-2))
        h = d.fit(inputs, y, epochs=3, batch_size=64, shuffle=False, verbose=0).history
        histories.append(h["feature_loss"])
        weights.append(student.get_weights())
        assert h["feature_loss"][-1] < h["feature_loss"][0]
        assert d.projection.kernel.shape == (8, 16)  # student width -> teacher width
        assert not any("projection" in w.name for w in student.weights)
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-4)
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_two_replicas_shares_sum_to_the_global_batch_average():
    """Two replicas' per-example losses -> each replica's share is its sum over the GLOBAL
    counts, so the shares (and the gradients the optimizer sums) add up to the average over
    the global batch, not to the sum of the two replicas' own averages."""
    t = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 0.0]],
                 np.float32)
    s = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [1.0, 1.0, 1.0], [0.0, 2.0, 0.0]],
                 np.float32)
    y = np.array([0, -1, 2, 1])  # replica A holds rows 0-1 (one labelled), B rows 2-3
    ce_rows = -np.log(_softmax(s)[[0, 2, 3], [0, 2, 1]])  # the three labelled rows
    kd_rows = 4.0 * (_softmax(t / 2) * (np.log(_softmax(t / 2)) - np.log(_softmax(s / 2)))).sum(-1)
    counts = (tf.constant(3, tf.int64), tf.constant(4, tf.int64))  # labelled, all (global)
    shares = [distillation_loss(y[i:i + 2], t[i:i + 2], s[i:i + 2], 2.0, 0.25, counts)
              for i in (0, 2)]
    total, ce, kd = (sum(float(share[k]) for share in shares) for k in range(3))
    assert ce == pytest.approx(ce_rows.sum() / 3, rel=1e-5)
    assert kd == pytest.approx(kd_rows.sum() / 4, rel=1e-5)
    assert total == pytest.approx(0.25 * ce_rows.sum() / 3 + 0.75 * kd_rows.sum() / 4, rel=1e-5)
    # Each replica averaging its own half (the bug this guards against) gives another value.
    own = [distillation_loss(y[i:i + 2], t[i:i + 2], s[i:i + 2], 2.0, 0.25) for i in (0, 2)]
    assert abs(sum(float(o[0]) for o in own) - total) > 0.1
    # One replica (no strategy): the counts come from the batch itself.
    whole = distillation_loss(y, t, s, 2.0, 0.25)
    assert float(whole[0]) == pytest.approx(total, rel=1e-5)
