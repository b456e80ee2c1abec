"""LM export: the prefill/decode step functions against the Keras model's own forward pass,
the exported files through LiteRT, onnxruntime and TensorFlow, the Android bundle's
TensorFlow-free client against Keras generation, and BUILD.md's Kotlin loop against
bundle.json."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from slm_tf.export.lm import StepFunctions
from slm_tf.models import ModelConfig, build_model

CONTEXT = 16


def _tiny(arch):
    tf.keras.utils.set_random_seed(3)
    cfg = ModelConfig(model=arch, hidden_dim=16, embedding_dim=16, num_layers=2, num_heads=2,
                      ff_dim=32, dropout=0.0)
    return build_model(cfg, 40, 40, CONTEXT)


def _check_steps(prefill, decode, model, prompt_len=10, new=4, atol=1e-4):
    """Prefill a prompt, decode ``new`` tokens; every logit row must equal the Keras model's
    full forward pass over the same ids (the independent oracle)."""
    vocab = model.get_layer("token_embedding").vocab_size
    ids = np.random.RandomState(5).randint(4, vocab, size=prompt_len + new).astype(np.int32)
    full = model(ids[np.newaxis]).numpy()[0]
    padded = np.zeros((1, CONTEXT), np.int32)
    padded[0, :prompt_len] = ids[:prompt_len]
    out = prefill(padded)
    np.testing.assert_allclose(out["logits"][0, :prompt_len], full[:prompt_len], atol=atol)
    cache = out["cache"]
    for t in range(prompt_len, prompt_len + new):
        out = decode(np.array([[ids[t]]], np.int32), cache, np.array([t], np.int32))
        np.testing.assert_allclose(out["logits"][0], full[t], atol=atol)
        cache = out["cache"]


@pytest.mark.parametrize("arch,int8_safe", [("gpt", False), ("gpt", True), ("lstm_lm", False)])
def test_step_functions_equal_the_keras_forward_pass(arch, int8_safe):
    # int8_safe: the int8 file's graph (masked scores floored at -30 instead of -1e9), which
    # must compute the same function in float.
    model = _tiny(arch)
    steps = StepFunctions(model, int8_safe=int8_safe)
    as_np = lambda d: {k: v.numpy() for k, v in d.items()}
    _check_steps(lambda ids: as_np(steps.prefill(tf.constant(ids))),
                 lambda tok, cache, pos: as_np(steps.decode(tf.constant(tok), tf.constant(cache),
                                                            tf.constant(pos))), model)


def test_folded_layer_norm_feeds_the_dense_layer_the_same_values():
    """Oracle: Keras's own LayerNormalization and Dense layers on random input, against the
    folded kernel/bias applied to the plain normalized input (numpy)."""
    import tf_keras as keras
    from slm_tf.export.lm_graph import fold_layer_norm
    rng = np.random.RandomState(0)
    x = rng.randn(5, 8).astype(np.float32) * 3 + 1
    norm, dense = keras.layers.LayerNormalization(epsilon=1e-6), keras.layers.Dense(6)
    norm.build((None, 8))
    dense.build((None, 8))
    norm.set_weights([rng.randn(8).astype(np.float32), rng.randn(8).astype(np.float32)])
    dense.set_weights([rng.randn(8, 6).astype(np.float32), rng.randn(6).astype(np.float32)])
    want = dense(norm(x)).numpy()
    kernel, bias = fold_layer_norm(norm, dense.kernel.numpy().astype(np.float64),
                                   dense.bias.numpy().astype(np.float64))
    plain = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(plain @ kernel + bias, want, rtol=1e-4, atol=1e-4)
    assert not np.allclose(plain @ dense.kernel.numpy() + dense.bias.numpy(), want, atol=0.1)


@pytest.mark.integration
def test_int8_file_is_integer_except_the_rotary_angles_and_scores_like_keras(tmp_path):
    """The tiny GPT's int8 file: every fully-connected operator of both signatures runs on
    int8 tensors, and the attention matmuls except the last block's (which the converter
    leaves in float next to the float cache output); the rotary angles stay float32 (the
    denylisted node); its prefill logits follow the Keras model's."""
    import re
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils
    from slm_tf.export.lm import calibration_calls, save_step_functions, to_lm_tflite
    model = _tiny("gpt")
    steps = StepFunctions(model, int8_safe=True)
    save_step_functions(steps, str(tmp_path / "sm"))
    rng = np.random.RandomState(2)
    windows = [rng.randint(4, 40, size=CONTEXT + 1) for _ in range(3)]
    data = to_lm_tflite(str(tmp_path / "sm"), "int8", "tiny",
                        calibration=calibration_calls(steps, windows))
    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    int8, f32 = schema.TensorType.INT8, schema.TensorType.FLOAT32
    angles, matmuls = [], []
    for graph in flat.subgraphs:
        for op in graph.operators:
            kind = names[flat.operatorCodes[op.opcodeIndex].builtinCode]
            types = [graph.tensors[i].type for i in op.inputs[:2]]
            if kind == "FULLY_CONNECTED":
                assert types == [int8, int8], kind
            if kind == "BATCH_MATMUL":
                matmuls.append(types == [int8, int8])
        angles += [t.type for t in graph.tensors
                   if re.fullmatch(r"rotary_angles\d*", t.name.decode())]
    assert angles == [f32, f32]  # one per signature
    # 2 blocks x (scores, context) x 2 signatures; only the last block's stay float.
    assert len(matmuls) == 8 and sum(matmuls) == 4
    prefill = Interpreter(model_content=data).get_signature_runner("prefill")
    ids = rng.randint(4, 40, size=(1, CONTEXT)).astype(np.int32)
    got, want = prefill(ids=ids)["logits"][0], model(ids).numpy()[0]
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95


# --- a tiny LM run, exported -------------------------------------------------------------
@pytest.fixture(scope="module")
def lm_export(tmp_path_factory, data_dir):
    from tiny_lm_run import make_lm_run
    from slm_tf.export.run import ExportConfig, export_run
    from slm_tf.train.artifacts import load_run
    root = tmp_path_factory.mktemp("lm_export")
    make_lm_run(str(root / "run"), data_dir, context=CONTEXT)
    out = str(root / "export")
    manifest = export_run(ExportConfig(run_dir=str(root / "run"), output_dir=out,
                                       formats=["tflite_float", "onnx", "saved_model"]))
    return load_run(str(root / "run")), out, manifest


@pytest.mark.integration
def test_exported_lm_files_run_prefill_and_decode_like_keras(lm_export):
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter
    run, out, manifest = lm_export
    assert manifest["task"] == "lm"
    assert {f["format"] for f in manifest["files"]} == {"tflite_float", "onnx", "saved_model"}
    interpreter = Interpreter(model_path=os.path.join(out, "model_float.tflite"))
    assert set(interpreter.get_signature_list()) == {"prefill", "decode"}
    assert not [op for op in interpreter._get_ops_details()
                if op["op_name"].startswith("Flex") or op["op_name"] == "CUSTOM"]
    prefill, decode = (interpreter.get_signature_runner(k) for k in ("prefill", "decode"))
    _check_steps(lambda ids: prefill(ids=ids),
                 lambda tok, cache, pos: decode(token=tok, cache=cache, position=pos), run.model)
    # Both signatures read one copy of the weights, and prefill holds no [M, M] mask or
    # rotary table of its own (they are computed at run time): what only one signature
    # holds is smaller than a single float [M, M] matrix.
    from slm_tf.export.lm_benchmark import lm_size_breakdown
    sizes = lm_size_breakdown(open(os.path.join(out, "model_float.tflite"), "rb").read())
    kernels = sum(w.numpy().nbytes for w in run.model.weights if len(w.shape) == 2)
    assert sizes["shared_buffer_bytes"] >= kernels  # (zero biases are stored once)
    assert sizes["prefill_only_buffer_bytes"] < 4 * CONTEXT * CONTEXT
    assert sizes["decode_only_buffer_bytes"] < 4 * CONTEXT * CONTEXT
    sessions = {k: ort.InferenceSession(os.path.join(out, "onnx", f"{k}.onnx"),
                                        providers=["CPUExecutionProvider"])
                for k in ("prefill", "decode")}

    def onnx_decode(tok, cache, pos):
        logits, new = sessions["decode"].run(["logits", "new_cache"],
                                             {"token": tok, "cache": cache, "position": pos})
        return {"logits": logits, "cache": new}
    _check_steps(lambda ids: dict(zip(["logits", "cache"], sessions["prefill"].run(
        ["logits", "cache"], {"ids": ids}))), onnx_decode, run.model)
    saved = tf.saved_model.load(os.path.join(out, "saved_model"))
    sig = saved.signatures
    as_np = lambda d: {k: v.numpy() for k, v in d.items()}
    _check_steps(lambda ids: as_np(sig["prefill"](ids=tf.constant(ids))),
                 lambda tok, cache, pos: as_np(sig["decode"](
                     token=tf.constant(tok), cache=tf.constant(cache),
                     position=tf.constant(pos))), run.model)


@pytest.mark.integration
def test_lm_bundle_client_without_tensorflow_continues_like_keras(lm_export, tmp_path):
    from slm_tf.generation import SamplingConfig, generate
    run, out, _ = lm_export
    bundle = os.path.join(out, "android")
    assert {"model.tflite", "vocab.txt", "tokenizer.json", "generation.json", "bundle.json"} \
        <= set(os.listdir(bundle))
    stop = json.load(open(os.path.join(bundle, "generation.json")))["stop"]
    # 30 new tokens after these prompts run past the 16-token context: the sliding window too.
    prompts = ["Whether 'tis nobler", "sea of tr\u20ac"]
    (tmp_path / "prompts.json").write_text(json.dumps(prompts), encoding="utf-8")
    subprocess.run([sys.executable, os.path.join(REPO, "tests", "lm_android_client.py"), bundle,
                    str(tmp_path / "prompts.json"), str(tmp_path / "out.json"), "30"],
                   check=True, cwd=tmp_path)
    got = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert got["tensorflow_loaded"] is False
    want = [generate(run.model, run.tokenizer, [p],
                     SamplingConfig(max_new_tokens=30, temperature=0, stop=stop))[0]
            for p in prompts]
    assert got["texts"] == want
    assert sum(len(t) for t in want) > 20  # the untrained model does say something


@pytest.mark.integration
def test_build_md_kotlin_loop_uses_the_bundle_names(lm_export):
    _, out, _ = lm_export
    spec = json.load(open(os.path.join(out, "android", "bundle.json")))
    text = open(os.path.join(REPO, "BUILD.md"), encoding="utf-8").read()
    section = text[text.index("## Language models on the phone"):]
    kotlin = re.search(r"```kotlin\n(.*?)```", section, re.S).group(1)
    calls = re.findall(r'runSignature\(\s*mapOf\((.*?)\),\s*mapOf\((.*?)\),\s*"(\w+)"\)',
                       kotlin, re.S)
    names = lambda args: set(re.findall(r'"(\w+)" to ', args))
    assert {key for _, _, key in calls} == set(spec["signatures"]) == {"prefill", "decode"}
    for inputs, outputs, key in calls:
        assert names(inputs) == set(spec["signatures"][key]["inputs"]), key
        assert names(outputs) == set(spec["signatures"][key]["outputs"]), key
    for key in re.findall(r'spec\.get\w+\("(\w+)"\)', kotlin):
        assert key in spec, key
    for key in re.findall(r'tok\.get\w+\("(\w+)"\)', kotlin):
        assert key in spec["tokenizer"], key
    generation = json.load(open(os.path.join(out, "android", "generation.json")))
    for key in re.findall(r'gen\.get\w+\("(\w+)"\)', kotlin):
        assert key in generation, key


@pytest.mark.integration
def test_lm_benchmark_scores_the_tflite_file_like_keras(lm_export):
    from slm_tf.export.lm_benchmark import benchmark_lm_export
    from slm_tf.lm_metrics import evaluate_lm
    from slm_tf.tasks import get_task
    from slm_tf.config import from_dict
    from slm_tf.data.config import DataConfig
    run, out, manifest = lm_export
    only_float = {**manifest, "files": [f for f in manifest["files"]
                                        if f["format"] == "tflite_float"]}
    records = {r["format"]: r for r in benchmark_lm_export(out, only_float, run, prompts=3,
                                                           new_tokens=5)}
    data = get_task("lm").prepare_data(from_dict(DataConfig, manifest["data"]))
    oracle = evaluate_lm(run.model, run.tokenizer, data.texts("test"), CONTEXT)
    assert records["keras"]["bits_per_character"] == pytest.approx(
        oracle["bits_per_character"], rel=1e-4)
    flt = records["tflite_float"]
    assert flt["bits_per_character"] == pytest.approx(oracle["bits_per_character"], rel=1e-4)
    assert flt["greedy_identical"] == 3 and flt["divergences"] == []
    assert flt["ttft_ms_1t"] > 0 and flt["decode_tokens_per_s_1t"] > 0
    assert flt["decode_tokens_per_s_2t"] > 0 and flt["peak_rss_bytes"] > 0
    assert os.path.exists(os.path.join(out, "benchmark.md"))



@pytest.mark.integration
def test_qat_lm_exports_and_the_tflite_file_continues_like_the_compressed_model(
        tmp_path, data_dir):
    """A QAT LM (tfmot's functional graph, as compress.py leaves it; no ``step``) exports: the step functions are rebuilt from its int8-grid weights, and the
    float TFLite file reproduces that model's logits and greedy continuation."""
    import dataclasses
    from tiny_lm_run import make_lm_run
    from slm_tf.compress.quantization import _resolve, calibrate, quantize
    from slm_tf.compress.rebuild import as_functional
    from slm_tf.export.lm import step_model
    from slm_tf.export.run import ExportConfig, exporter_for
    from slm_tf.pipeline.lm_report import greedy
    from slm_tf.train.artifacts import load_run
    from ai_edge_litert.interpreter import Interpreter
    make_lm_run(str(tmp_path / "run"), data_dir, context=CONTEXT)
    run = load_run(str(tmp_path / "run"))
    qat = quantize(as_functional(run.model))
    ids = np.random.RandomState(1).randint(4, run.tokenizer.vocab_size, (8, CONTEXT))
    calibrate(qat, run.model, ids)  # activation ranges, as compress.py starts them
    qat(ids, training=True)  # one training-mode call sets every weight's int8 range
    float_model, run = run.model, dataclasses.replace(run, model=qat)
    rebuilt = step_model(run)
    # Oracle: the float model's weights, kernels rounded by numpy to the symmetric 8-bit grid
    # of tfmot's weight quantizer (255 levels, max |w| / 127 apart); the rest unchanged.
    layer, source = rebuilt.get_layer, float_model.get_layer
    quantized = {"token_embedding": ["embeddings"], "block0_ffn_in": ["kernel"],
                 "block1_attention": ["query.kernel", "value.kernel"]}
    for name, paths in quantized.items():
        for path in paths:
            w = _resolve(source(name), path).numpy()
            step = np.abs(w).max() / 127
            np.testing.assert_allclose(_resolve(layer(name), path).numpy(),
                                       np.round(w / step) * step, atol=1e-6)
    np.testing.assert_array_equal(layer("block1_attention").value.bias.numpy(),
                                  source("block1_attention").value.bias.numpy())
    np.testing.assert_array_equal(layer("final_norm").gamma.numpy(),
                                  source("final_norm").gamma.numpy())
    out = str(tmp_path / "export")
    exporter_for("lm")(run, ExportConfig(run_dir=str(tmp_path / "run"), output_dir=out,
                                         formats=["tflite_float"]), out)
    interpreter = Interpreter(model_path=os.path.join(out, "model_float.tflite"))
    prefill, decode = (interpreter.get_signature_runner(k) for k in ("prefill", "decode"))
    _check_steps(lambda ids: prefill(ids=ids),
                 lambda tok, cache, pos: decode(token=tok, cache=cache, position=pos), rebuilt)
    prompt = run.tokenizer.ids("Whether 'tis")
    padded = np.zeros((1, CONTEXT), np.int32)
    padded[0, :len(prompt)] = prompt
    res = prefill(ids=padded)
    tokens, cache = [int(np.argmax(res["logits"][0, len(prompt) - 1]))], res["cache"]
    for t in range(len(prompt), len(prompt) + 9):
        res = decode(token=np.array([[tokens[-1]]], np.int32), cache=cache,
                     position=np.array([t], np.int32))
        tokens.append(int(np.argmax(res["logits"][0])))
        cache = res["cache"]
    assert tokens == greedy(rebuilt, prompt, 10)


def test_lm_report_verdict_puts_the_final_file_next_to_the_teachers_file():
    from slm_tf.pipeline.lm_report import _verdict
    teacher = {"name": "teacher (Keras)", "stage": "teacher", "format": "keras",
               "bits_per_character": 2.0, "size_bytes": 3200}
    final = {"name": "final tflite_dynamic", "stage": "final", "format": "tflite_dynamic",
             "bits_per_character": 2.1, "bpc_vs_teacher": 1.05, "size_bytes": 1000,
             "size_vs_teacher": 1000 / 3200, "tokens_per_s": 300.0, "ttft_ms": 5.0}
    teacher_file = {"name": "teacher tflite_float", "stage": "teacher",
                    "format": "tflite_float", "bits_per_character": 2.0, "size_bytes": 4000,
                    "tokens_per_s": 100.0, "ttft_ms": 20.0}
    text = _verdict({"rows": [teacher, final, teacher_file], "teacher": teacher,
                     "final": final})
    assert "+5.0% vs the teacher's 2.0000" in text
    assert "tflite_float file: 0.250 of its 4,000 bytes" in text
    assert "decode 300.0 vs 100.0 tokens/s" in text and "5.0 vs 20.0 ms" in text
