"""The tfidf model: its features are scikit-learn's char_wb TF-IDF (the reference library as the
oracle), its hashing respects word edges, and it exports to int8 TFLite that agrees with Keras."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from slm_tf.models import ModelConfig, build_model
from slm_tf.models.tfidf import HashedNgrams
from slm_tf.tokenizers import CharTokenizer

TEXTS = ["The bank card was lost, the card!", "A lost card: call the bank.",
         "Transfer   the money\nto the account", "the account was closed; call us",
         "Money lost in a transfer", "Why was my card declined at the bank?",
         "I", "  a  "]


def _model(tok, buckets=65536, classes=3, seq=64):
    return build_model(ModelConfig(model="tfidf", tfidf_buckets=buckets, dropout=0.0),
                       tok.vocab_size, classes, seq, tok)


def _features(model, ids):
    hashed = model.get_layer("ngram_ids")(tf.constant(ids))
    return model.get_layer("tfidf")(hashed).numpy()


def test_features_are_scikit_learns_char_wb_tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer
    tok = CharTokenizer.learn(TEXTS, 200, min_frequency=1, word_boundaries=True)
    model = _model(tok)
    ids = tok.encode(TEXTS, 64)
    model.learn_statistics([ids[:3], ids[3:]])  # two batches, as a dataset would give them
    ours = _features(model, ids)
    ref = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                          min_df=2, norm=None).fit_transform(TEXTS).toarray()
    for row, (a, b) in enumerate(zip(ours, ref)):
        # Without hash collisions (65,536 buckets, a few hundred n-grams) the two vectors hold
        # the same values, each n-gram's in its own bucket or column.
        np.testing.assert_allclose(np.sort(a[a > 0]), np.sort(b[b > 0]), rtol=1e-5,
                                   err_msg=TEXTS[row])
    # And the model's score scaling is the reference's L2 norm.
    inverse = model.get_layer("inverse_norm")(tf.constant(ours)).numpy()[:, 0]
    has = ref.any(axis=1)
    np.testing.assert_allclose(inverse[has], 1 / np.linalg.norm(ref[has], axis=1), rtol=1e-5)


def test_ngrams_do_not_cross_word_edges_and_padding_adds_none():
    # Ids 5..9 are characters, 1 a boundary; 0 padding. Orders 2 and 3.
    layer = HashedNgrams(1000, orders=(2, 3), boundary_ids=(1,))
    ids = np.array([[1, 5, 6, 1, 7, 1, 0, 0]], np.int32)  # " ab c " + padding
    out = layer(tf.constant(ids)).numpy()[0]
    bigrams, trigrams = out[:8], out[8:]
    # Bigrams end at positions 1..5: " a", "ab", "b ", " c", "c "; none at 0 or in padding.
    assert (bigrams[[0, 6, 7]] == 1000).all() and (bigrams[1:6] < 1000).all()
    # Trigrams: " ab" (2), "ab " (3) and " c " (5); "b c" (4) crosses the boundary at 3.
    assert (trigrams[[2, 3, 5]] < 1000).all() and (trigrams[[0, 1, 4, 6, 7]] == 1000).all()
    # The same word gives the same n-grams wherever it stands.
    again = layer(tf.constant([[1, 7, 1, 5, 6, 1, 0, 0]], np.int32)).numpy()[0]
    assert sorted(again[again < 1000]) == sorted(out[out < 1000])


def test_buckets_beyond_the_int32_safe_range_are_refused():
    with pytest.raises(ValueError, match="buckets must be in"):
        HashedNgrams(10 ** 6)


@pytest.fixture(scope="module")
def trained():
    """A tfidf model trained on an easy three-class task, with its tokenizer and data."""
    rng = np.random.RandomState(0)
    words = {0: ["loan", "credit", "interest"], 1: ["card", "atm", "pin"],
             2: ["fraud", "stolen", "police"]}
    common = ["the", "my", "bank", "account", "please", "help"]
    texts, labels = [], []
    for i in range(240):
        texts.append(" ".join(rng.choice(words[i % 3] * 2 + common, 30)))
        labels.append(i % 3)
    tok = CharTokenizer.learn(texts, 100, word_boundaries=True)
    keras.utils.set_random_seed(0)
    model = _model(tok, buckets=4096, seq=256)
    ids = tok.encode(texts, 256)
    model.learn_statistics([ids])
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ids[:200], np.array(labels[:200]), epochs=5, batch_size=32, verbose=0)
    return tok, model, texts, np.array(labels), ids


def test_int8_tflite_and_onnx_agree_with_keras_after_training(trained, tmp_path):
    from slm_tf.export.onnx import to_onnx
    from slm_tf.export.runtimes import open_runtime
    from slm_tf.export.tflite import to_tflite
    tok, model, texts, labels, ids = trained
    want = model(ids[200:]).numpy()
    assert (want.argmax(1) == labels[200:]).mean() == 1.0  # an easy task, learned
    for q in ("float", "int8"):
        path = str(tmp_path / f"{q}.tflite")
        with open(path, "wb") as f:
            f.write(to_tflite(model, q, 256, ids[:100] if q == "int8" else None))
        got = open_runtime(path).logits(ids[200:])
        if q == "float":
            np.testing.assert_allclose(got, want, atol=1e-4)
        else:
            assert (got.argmax(1) == want.argmax(1)).all()
            assert np.abs(got - want).max() <= 0.1 * np.abs(want).max()
    # ONNX counts repeated n-grams as TF does (30 words from 9: every text repeats some).
    path = str(tmp_path / "m.onnx")
    with open(path, "wb") as f:
        f.write(to_onnx(model, 256))
    np.testing.assert_allclose(open_runtime(path).logits(ids[200:]), want, atol=1e-4)


def test_android_bundle_tokenizes_word_edges_like_the_tokenizer(trained, tmp_path):
    # An app following bundle.json's steps (tests/android_client.py, no TensorFlow) gets the
    # tokenizer's ids, [SPACE] included, and the Keras model's labels.
    import json
    import subprocess
    import sys
    from slm_tf.export.bundle import write_bundle
    from slm_tf.export.tflite import to_tflite
    tok, model, texts, labels, ids = trained
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(to_tflite(model, "float", 256))
    bundle = write_bundle(str(tmp_path), str(tflite), "float", tok, 256, ["a", "b", "c"], "t")
    spec = json.load(open(os.path.join(bundle, "bundle.json")))["tokenizer"]
    assert spec["word_boundaries"] is True and spec["space_id"] == tok.space_id
    sample = texts[200:210] + ["  The\tBANK\n\ncard  ", "", "loan\u00a0pin"]
    (tmp_path / "texts.json").write_text(json.dumps(sample), encoding="utf-8")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, os.path.join(repo, "tests", "android_client.py"), bundle,
                    str(tmp_path / "texts.json"), str(tmp_path / "out.json")], check=True,
                   cwd=tmp_path)
    got = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert got["ids"] == tok.encode(sample, 256).tolist()
    assert got["labels"] == [["a", "b", "c"][i] for i in
                             model(tok.encode(sample, 256)).numpy().argmax(1)]


def test_a_budgeted_models_qat_int8_file_fits_the_budget():
    # The automatic recipe sizes the counters for --student_max_bytes from bytes per counter
    # (tests/test_autorecipe.py: 38,912 counters for 20 classes and 1 MB); the pipeline exports
    # the quantization-aware model at the recipe's longest length, so that file is weighed.
    from slm_tf.compress import quantization
    from slm_tf.export.tflite import to_tflite
    tok = CharTokenizer.learn(TEXTS, 100, word_boundaries=True)
    model = _model(tok, buckets=38_912, classes=20, seq=16384)
    ids = tok.encode(TEXTS * 5, 16384)
    model.learn_statistics([ids])
    qat = quantization.quantize(model)
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(ids, np.arange(len(ids)) % 20, epochs=1, verbose=0)
    size = len(to_tflite(qat, "int8", 16384))
    assert 38_912 * 24 < size <= 1_000_000, size


@pytest.mark.integration
def test_pipeline_with_no_flags_ships_tfidf_for_long_documents(tmp_path, data_dir):
    # Long English documents (400 words, past the CNN's 384 pieces) and no recipe flags: the
    # teacher and the student are tfidf models, distillation runs without augmented copies
    # (no word embeddings to draw neighbours from), and the final int8 file is exported with
    # every other format and benchmarked.
    import json
    from conftest import run_script, write_csv
    rng = np.random.RandomState(1)
    topics = {"loans": ["loan", "interest", "credit", "mortgage"],
              "cards": ["card", "atm", "pin", "contactless"],
              "fraud": ["fraud", "stolen", "police", "scam"]}
    common = ["the", "bank", "account", "please", "help", "my", "today", "branch"]
    rows = [(" ".join(rng.choice(words + common * 3, 400)), label)
            for label, words in topics.items() for _ in range(40)]
    data = write_csv(tmp_path / "docs.csv", rows)
    out = tmp_path / "pipe"
    run_script("pipeline", f"--data={data}", f"--data_dir={data_dir}", f"--output_dir={out}",
               "--latency_queries=5", "--teacher_latency_queries=5", timeout=900)
    teacher = json.load(open(out / "teacher" / "config.json"))
    assert teacher["model"]["model"] == "tfidf" and teacher["tokenizer"]["word_boundaries"]
    distilled = json.load(open(out / "distilled" / "config.json"))
    assert distilled["model"]["model"] == "tfidf" and distilled["augment"]["augment_copies"] == 0
    summary = json.load(open(out / "summary.json"))
    rows = {r["name"]: r for r in summary["rows"]}
    final = rows["final tflite_int8"]
    assert final["file_bytes"] <= 1_000_000 and final["accuracy"] >= 0.9
    assert final["parity_ok"] and rows["final onnx"]["agreement"] >= 0.99
    assert "baseline (TF-IDF + linear)" in rows
