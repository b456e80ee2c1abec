"""Export: every zoo architecture to every format through the real converters and runtimes,
Flex refusal, and on a trained banking77 run the parity floors, the benchmark and the Android
bundle read by a TensorFlow-free client."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from ai_edge_litert.interpreter import Interpreter

from conftest import REPO, run_script
from slm_tf.errors import UserError
from slm_tf.export.onnx import to_onnx
from slm_tf.export.runtimes import latency_ms, open_runtime
from slm_tf.export.tflite import QUANTIZATIONS, to_tflite
from slm_tf.models import MODELS, ModelConfig, build_model
from slm_tf.tokenizers.wordpiece import WordPieceTokenizer
from slm_tf.train.artifacts import save_saved_model

SEQ = 12
TINY = dict(embedding_dim=16, hidden_dim=16, num_layers=1, num_heads=2, ff_dim=32,
            num_filters=8, kernel_sizes=["2", "3"])


def _ids(n=6, seed=0):
    """Rows like the tokenizer's: [CLS]=2, words, [SEP]=3, then padding (0) of varying length."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, SEQ), np.int32)
    for i in range(n):
        k = int(rng.integers(1, SEQ - 1))
        ids[i, :k + 2] = [2, *rng.integers(5, 60, k), 3]
    return ids


def _ops(tflite_bytes):
    from ai_edge_litert.interpreter import Interpreter
    return {op["op_name"] for op in Interpreter(model_content=tflite_bytes)._get_ops_details()}


@pytest.mark.integration
@pytest.mark.parametrize("arch", MODELS.names())
def test_every_architecture_exports_to_every_format(arch, tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(model=arch, **TINY), 64, 5, SEQ)
    ids = _ids()
    want = model(ids, training=False).numpy()
    calibration = _ids(40, seed=1)
    for q in QUANTIZATIONS.names():
        data = to_tflite(model, q, SEQ, calibration if q == "int8" else None)
        assert not any(op.startswith(("Flex", "DELEGATE", "CUSTOM")) for op in _ops(data)), q
        path = tmp_path / f"m_{q}.tflite"
        path.write_bytes(data)
        got = open_runtime(str(path)).logits(ids)
        # Float is exact; quantized formats must stay close on these untrained logits.
        tol = {"float": 1e-4, "fp16": 1e-2, "dynamic": 5e-2, "int8": 0.25}[q]
        scale = max(1.0, float(np.abs(want).max()))
        assert np.abs(got - want).max() <= tol * scale, (q, np.abs(got - want).max())
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(to_onnx(model, SEQ))
    np.testing.assert_allclose(open_runtime(str(onnx_path)).logits(ids), want, atol=1e-4)
    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] +
                             [f"w{i}" for i in range(59)])
    sm = str(tmp_path / "saved_model")
    save_saved_model(sm, model, tok, SEQ)
    np.testing.assert_allclose(open_runtime(sm).logits(ids), want, atol=1e-4)


@pytest.mark.integration
def test_recurrent_models_convert_to_builtin_lstm_and_gru_graphs():
    for arch in ("bilstm", "bigru"):
        model = build_model(ModelConfig(model=arch, **TINY), 64, 5, SEQ)
        ops = _ops(to_tflite(model, "float", SEQ))
        assert "WHILE" not in ops and not any(o.startswith("Flex") for o in ops), (arch, ops)


@pytest.mark.integration
def test_a_model_needing_flex_ops_is_refused_with_the_ops_named():

    ids = keras.Input(shape=(2,), dtype="int32", name="ids")
    x = keras.layers.Embedding(50, 4)(ids)
    # Cumulative product over a reversed exclusive scan has no builtin TFLite kernel.
    x = keras.layers.Lambda(lambda t: tf.math.cumprod(t, axis=1, exclusive=True,
                                                      reverse=True))(x)
    model = keras.Model(ids, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    with pytest.raises(UserError, match=r"(?s)builtin TFLite lacks: .*Cumprod.*--allow_flex"):
        to_tflite(model, "float", 2)
    assert any(op.startswith("Flex") or op == "CUSTOM"
               for op in _ops(to_tflite(model, "float", 2, allow_flex=True)))


# --- a trained banking77 run, exported and benchmarked through the scripts -----------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("export")
    run = str(root / "run")
    run_script("train", "--data=banking77", f"--data_dir={data_dir}", "--model=cnn",
               "--embedding_dim=64", "--num_filters=64", "--kernel_sizes=2,3,4",
               "--hidden_dim=0", "--max_seq_len=48", "--vocab_size=4000", "--epochs=4",
               "--learning_rate=5e-3", "--validation_fraction=0.05", f"--output_dir={run}")
    out = str(root / "export")
    run_script("export", f"--run_dir={run}", f"--output_dir={out}",
               "--bundle_format=tflite_float")
    proc = run_script("benchmark", f"--export_dir={out}", "--latency_queries=50", check=False)
    return run, out, proc


@pytest.mark.integration
def test_benchmark_parity_on_the_banking77_test_split(exported):
    run, out, proc = exported
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {r["format"]: r for r in json.load(open(os.path.join(out, "benchmark.json")))}
    assert set(records) == {"keras", "tflite_int8", "tflite_fp16", "tflite_dynamic",
                            "tflite_float", "onnx", "saved_model"}
    keras_acc = records["keras"]["accuracy"]
    assert keras_acc > 0.8
    floors = {"tflite_float": 0.999, "onnx": 0.999, "saved_model": 0.999, "tflite_int8": 0.99,
              "tflite_dynamic": 0.995, "tflite_fp16": 0.995}
    for fmt, floor in floors.items():
        r = records[fmt]
        assert r["agreement"] >= floor, (fmt, r["agreement"])
        assert abs(r["accuracy"] - keras_acc) <= 0.01, fmt
        for key in ("file_bytes", "p50_ms_1t", "p95_ms_1t", "p50_ms_2t", "peak_rss_bytes"):
            assert r[key] > 0, (fmt, key)
    int8, flt = records["tflite_int8"], records["tflite_float"]
    assert int8["file_bytes"] < 0.3 * flt["file_bytes"]
    assert int8["bytes_vs_tflite_float"] == pytest.approx(int8["file_bytes"] / flt["file_bytes"])
    assert int8["p50_1t_vs_tflite_float"] == pytest.approx(int8["p50_ms_1t"] / flt["p50_ms_1t"])
    # Independent oracles for the breakdown: the float file's constant buffers hold every Keras
    # parameter as float32 (plus a few shape constants), and LiteRT's own view of each tensor's
    # quantization parameters (float32 scales, int64 zero points) adds up to the breakdown's.
    params = json.load(open(os.path.join(run, "metrics.json")))["num_params"]
    assert 4 * params <= flt["size_breakdown"]["buffer_bytes"] <= 4 * params + 4096
    assert 0.24 < int8["size_breakdown"]["buffer_bytes"] / flt["size_breakdown"]["buffer_bytes"] < 0.27
    for r in (int8, flt):
        details = Interpreter(model_path=os.path.join(out, r["path"])).get_tensor_details()
        litert_quant = sum(4 * len(d["quantization_parameters"]["scales"])
                           + 8 * len(d["quantization_parameters"]["zero_points"])
                           for d in details)
        assert r["size_breakdown"]["quantization_param_bytes"] == litert_quant, r["format"]
    assert int8["size_breakdown"]["quantization_param_bytes"] > 0
    assert os.path.exists(os.path.join(out, "benchmark.md"))


@pytest.mark.integration
def test_android_bundle_without_tensorflow_predicts_like_keras(exported, tmp_path):
    from slm_tf.train.artifacts import load_run
    from slm_tf.data.sources import EMBEDDED_DIR
    import csv
    run_dir, out, _ = exported
    bundle = os.path.join(out, "android")
    assert {"model.tflite", "vocab.txt", "labels.txt", "bundle.json", "README.md"} <= set(
        os.listdir(bundle))
    with open(os.path.join(EMBEDDED_DIR, "banking77", "test.csv"), encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)][::10]
    texts += ["Où est ma CARTE?? 💳", "card\u00a0arrived\ttoday!!", "我的卡", ""]
    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    result = tmp_path / "out.json"
    subprocess.run([sys.executable, os.path.join(REPO, "tests", "android_client.py"), bundle,
                    str(tmp_path / "texts.json"), str(result)], check=True, cwd=tmp_path)
    got = json.loads(result.read_text(encoding="utf-8"))
    assert got["tensorflow_loaded"] is False
    run = load_run(run_dir)
    ids = run.tokenizer.encode(texts, run.max_seq_len)
    assert got["ids"] == ids.tolist()
    want = [run.label_names[i] for i in run.model.predict(ids, verbose=0).argmax(1)]
    assert got["labels"] == want


def test_latency_percentiles_measure_wall_time():
    """The latency benchmark against a clock-controlled runtime: 9 of 10 calls sleep 2 ms, every
    10th 25 ms, so the median is about 2 ms and the 95th percentile a slow call."""
    class Sleeper:
        calls = 0

        def logits(self, ids):
            self.calls += 1
            time.sleep(0.025 if self.calls % 10 == 0 else 0.002)
            return np.zeros((len(ids), 2), np.float32)

    runtime = Sleeper()
    t = latency_ms(runtime, np.zeros((100, 4), np.int32), warmup=0)
    assert len(t) == 100 and runtime.calls == 100
    assert 2.0 <= np.percentile(t, 50) < 15.0
    assert np.percentile(t, 95) >= 25.0


@pytest.mark.integration
def test_exported_files_carry_the_fitted_temperature(exported):
    from slm_tf.train.artifacts import load_run
    run_dir, out, _ = exported
    t = json.load(open(os.path.join(run_dir, "metrics.json")))["trust"]["temperature"]
    assert t != 1.0
    spec = json.load(open(os.path.join(out, "android", "bundle.json")))
    assert spec["temperature"] == pytest.approx(t) and spec["abstain"] is None  # no OOS data
    run = load_run(run_dir)
    ids = _ids(8, seed=3)
    ids = np.pad(ids, ((0, 0), (0, run.max_seq_len - SEQ)))
    z = run.model(ids, training=False).numpy().astype(np.float64) / t
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_path=os.path.join(out, "model_float.tflite")).get_signature_runner()
    got = np.concatenate([runner(ids=row[None])["probabilities"] for row in ids])
    np.testing.assert_allclose(got, want, atol=1e-5)


def _hand_ece(probs, labels, bins=15):
    """ECE written out independently: bin i holds confidences in ((i-1)/15, i/15], the
    gap |accuracy - mean confidence| of each bin weighted by its share of rows."""
    conf, hit = probs.max(1), probs.argmax(1) == labels
    which = np.clip(np.ceil(conf * bins).astype(int), 1, bins)
    return sum(abs(hit[which == b].mean() - conf[which == b].mean()) * (which == b).mean()
               for b in range(1, bins + 1) if (which == b).any())


@pytest.mark.integration
def test_benchmark_ece_of_the_int8_file_equals_a_hand_computed_ece(exported):
    """benchmark.json's ECE before/after temperature for the int8 file equals ECE computed by
    hand from that file's own outputs, read here straight from LiteRT."""
    from slm_tf.config import from_dict
    from slm_tf.data.config import DataConfig
    from slm_tf.data.pipeline import prepare_data
    from slm_tf.train.artifacts import load_run
    run_dir, out, _ = exported
    t = json.load(open(os.path.join(run_dir, "metrics.json")))["trust"]["temperature"]
    records = {r["format"]: r for r in json.load(open(os.path.join(out, "benchmark.json")))}
    cal = records["tflite_int8"]["calibration"]
    assert cal["temperature"] == pytest.approx(t) and cal["bins"] == 15
    manifest = json.load(open(os.path.join(out, "export.json")))
    data = prepare_data(from_dict(DataConfig, manifest["data"]))
    run = load_run(run_dir)
    ids = run.tokenizer.encode(data.texts("test"), run.max_seq_len)
    labels = np.asarray(data.labels("test"))
    runner = Interpreter(model_path=os.path.join(out, "model_int8.tflite")).get_signature_runner()
    outs = [runner(ids=row[None].astype(np.int32)) for row in ids]
    probs = np.concatenate([o["probabilities"] for o in outs]).astype(np.float64)
    raw = np.concatenate([o["logits"] for o in outs]).astype(np.float64) * t  # T undone
    before = np.exp(raw - raw.max(1, keepdims=True))
    before /= before.sum(1, keepdims=True)
    assert cal["ece_after"] == pytest.approx(_hand_ece(probs, labels), abs=1e-9)
    assert cal["ece_before"] == pytest.approx(_hand_ece(before, labels), abs=1e-6)
    assert cal["ece_before"] != pytest.approx(cal["ece_after"], abs=1e-4)  # T changed them
    md = open(os.path.join(out, "benchmark.md")).read()
    assert "ece_before" in md and f"{cal['ece_after']:.4f}" in md
