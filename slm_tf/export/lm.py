"""Language-model export: the incremental step functions, not one forward pass.

Every file carries two signatures with a fixed maximum context ``M`` (the run's max_seq_len)
and batch 1, as an app calls them:

- ``prefill(ids[1, M] int32) -> logits[1, M, V], cache``: the prompt at positions 0.., padded
  with 0 (``[PAD]``, never a real token) up to ``M``; the next token's logits are row
  ``len(prompt) - 1``. Scoring a text (bits per character) reads every row.
- ``decode(token[1, 1] int32, cache, position[1] int32) -> logits[1, V], cache``: the token at
  absolute ``position`` (the first decode is at ``len(prompt)``); feed the returned cache back.

The cache is the GPT's key/value cache ``[2 * layers, 1, heads, M, head_width]`` (keys of
block i at 2i, values at 2i + 1) (slot
``position % M``; past ``M`` tokens the oldest is overwritten: a sliding window), or the
LSTM/GRU state ``[layers, states, 1, units]`` (``position`` unused). Written as TFLite (float,
dynamic-range, float16, int8 weights), ONNX (``onnx/prefill.onnx``, ``onnx/decode.onnx``) and
a SavedModel with the ``prefill``/``decode`` signatures; plus the Android bundle.
"""
import os
import re
import shutil
import tempfile
from typing import Dict, List

import numpy as np
import tensorflow as tf

from slm_tf.data.lm_dataset import eod_id
from slm_tf.errors import UserError
from slm_tf.export.config import EXPORT_FORMATS, TFLITE_FORMATS, ExportConfig
from slm_tf.export.lm_graph import ROTARY_ANGLES, CompactGPT, attention_mask
from slm_tf.export.run import EXPORTERS, base_manifest, bundle_choice
from slm_tf.export.tflite import _flex_ops
from slm_tf.io_utils import atomic_path
from slm_tf.registry import Registry
from slm_tf.train.artifacts import Run

PREFILL, DECODE = "prefill", "decode"
IDS, TOKEN, CACHE, POSITION, LOGITS = "ids", "token", "cache", "position", "logits"
ONNX_NEW_CACHE = "new_cache"
LM_FORMATS: Registry = Registry("LM export format", EXPORT_FORMATS)


def step_model(run: Run):
    """The run's language model with its incremental ``step`` (what the step functions and
    the benchmark's Keras reference call).

    A plain run's model is returned as is. A compressed run whose ``model.keras`` is tfmot's
    functional QAT graph has no ``step``: it becomes a fresh zoo LM of the run's architecture
    holding the weights the QAT graph computes with (every fake-quantized weight rounded to
    its int8 grid with its trained range, the rest copied); its activations are float, as in
    the float/dynamic-range files (the int8 file calibrates its own ranges).
    """
    from slm_tf.compress.quantization import float_layer
    from slm_tf.models import ModelConfig, build_model, is_language_model
    from slm_tf.config import from_dict
    model = run.model
    if is_language_model(model):
        return model
    vocab = run.tokenizer.vocab_size
    fresh = build_model(from_dict(ModelConfig, run.config["model"]), vocab, vocab,
                        run.max_seq_len)
    sources = {float_layer(layer).name: layer for layer in model.layers}
    for layer in fresh.layers:
        if not layer.weights:
            continue
        if layer.name not in sources:
            raise UserError(f"{run.run_dir}: layer {layer.name} of a {fresh.arch} is missing "
                            "from its model.keras; it cannot be exported as prefill/decode "
                            "step functions.")
        _copy_quantized(sources[layer.name], layer)
    return fresh


def _copy_quantized(wrapper, layer) -> None:
    """Sets ``layer``'s weights from ``wrapper`` (a tfmot QuantizeWrapper around a layer of the
    same kind, or that layer itself): quantized weights as the wrapper's weight quantizers
    round them (inference mode: the trained ranges), the others as they are."""
    from slm_tf.compress.quantization import _resolve, float_layer
    inner = float_layer(wrapper)
    weight_vars = getattr(wrapper, "_weight_vars", [])
    config = getattr(wrapper, "quantize_config", None)
    paths = list(getattr(config, "weight_paths", None) or getattr(config, "weight_attrs", []))
    if len(paths) != len(weight_vars):
        raise UserError(f"internal: {wrapper.name} quantizes {len(weight_vars)} weights but "
                        f"its config names {paths}")
    quantized = set()
    for path, (weight, quantizer, quantizer_vars) in zip(paths, weight_vars):
        target = _resolve(layer, path)
        target.assign(quantizer(weight, False, quantizer_vars))
        quantized.add(target.ref())
    # While wrapped, the inner layer may track its quantized weights or not (tfmot swaps
    # them for tensors in call): the others follow in the same order either way.
    sources = {weight.ref() for weight, _, _ in weight_vars}
    rest = [w for w in inner.weights if w.ref() not in sources]
    targets = [w for w in layer.weights if w.ref() not in quantized]
    if [tuple(w.shape) for w in rest] != [tuple(w.shape) for w in targets]:
        raise UserError(f"internal: {wrapper.name}'s weights do not match a fresh "
                        f"{type(layer).__name__}")
    for source, target in zip(rest, targets):
        target.assign(source)


class StepFunctions(tf.Module):
    """``prefill`` and ``decode`` of a causal LM as fixed-shape ``tf.function``s."""

    def __init__(self, model, int8_safe: bool = False):
        super().__init__()
        self.model = model
        self.int8_safe = int8_safe
        self.context = int(model.max_seq_len)
        self.is_gpt = hasattr(model, "cached_forward")
        self.cache_shape = model.cache_shape(1) if self.is_gpt else self._state_shape()
        # The GPT's weights rearranged for fewer TFLite operators (lm_graph.py).
        self.graph = CompactGPT(model, int8_safe) if self.is_gpt else None
        self.prefill = tf.function(self._prefill, input_signature=[
            tf.TensorSpec([1, self.context], tf.int32, name=IDS)])
        self.decode = tf.function(self._decode, input_signature=[
            tf.TensorSpec([1, 1], tf.int32, name=TOKEN),
            tf.TensorSpec(self.cache_shape, tf.float32, name=CACHE),
            tf.TensorSpec([1], tf.int32, name=POSITION)])

    def signatures(self) -> Dict:
        return {PREFILL: self.prefill.get_concrete_function(),
                DECODE: self.decode.get_concrete_function()}

    # --- GPT: key/value cache ------------------------------------------------------------
    def _prefill(self, ids):
        if not self.is_gpt:
            return self._recurrent_prefill(ids)
        m = self.context
        # The [M, M] mask and rotary tables are computed at run time from the positions: as
        # constants the converter would fold them into the file (147 KB at M = 128, a
        # tenth of a dynamic-range file). The zero comes from the input (ids are never
        # negative), so nothing downstream folds.
        positions = tf.range(m) + tf.reduce_min(tf.minimum(ids, 0))
        real = tf.not_equal(ids, 0)  # [1, M]
        # Query i sees the real keys up to i, and always itself (a padding row is never
        # all-masked).
        sees = tf.logical_or(tf.logical_and(positions[tf.newaxis] <= positions[:, tf.newaxis],
                                            real), tf.equal(positions[tf.newaxis],
                                                            positions[:, tf.newaxis]))
        cos, sin = self.graph.rotary_tables(positions)
        logits, cache = self.graph.forward(ids, None, attention_mask(sees, self.int8_safe),
                                           cos, sin)
        return {LOGITS: logits[tf.newaxis], CACHE: tf.reshape(cache, self.cache_shape)}

    def _decode(self, token, cache, position):
        if not self.is_gpt:
            return self._recurrent_decode(token, cache, position)
        m = self.context
        slots = tf.range(m)
        write = tf.cast(tf.equal(slots, position % m), tf.float32)[:, tf.newaxis]  # [M, 1]
        # Every slot up to the position holds a past token (all of them once the ring is full).
        cos, sin = self.graph.rotary_tables(position)
        flat = tf.reshape(cache, [self.cache_shape[0]] + self.cache_shape[2:])
        mask = attention_mask((slots <= position)[tf.newaxis], self.int8_safe)
        logits, cache = self.graph.forward(token, flat, mask, cos, sin,
                                           keep=1.0 - write, scatter=write)
        return {LOGITS: logits, CACHE: tf.reshape(cache, self.cache_shape)}

    # --- LSTM / GRU: state ---------------------------------------------------------------
    def _cells(self):
        return [self.model.get_layer(f"rnn{i}").cell
                for i in range(self.model.model_config["num_layers"])]

    def _state_shape(self) -> List[int]:
        cell = self.model.get_layer("rnn0").cell
        states = len(cell.state_size) if isinstance(cell.state_size, (list, tuple)) else 1
        return [len(self._cells()), states, 1, self.model.model_config["hidden_dim"]]

    def _run_cells(self, x, cache, real=None):
        """One time step of every layer: ``(output, new cache)``; ``real`` 0 keeps the state."""
        new = []
        for i, cell in enumerate(self._cells()):
            states = [cache[i, s] for s in range(self.cache_shape[1])]
            out, next_states = cell(x, states, training=False)
            next_states = tf.nest.flatten(next_states)
            if real is not None:
                next_states = [real * n + (1.0 - real) * s for n, s in zip(next_states, states)]
            new.append(tf.stack(next_states))
            x = out
        return x, tf.stack(new)

    def _logits(self, x):
        embedding = self.model.get_layer("token_embedding")
        return embedding(self.model.get_layer("output_projection")(x), mode="logits")

    def _recurrent_prefill(self, ids):
        x = self.model.get_layer("token_embedding")(ids)
        real = tf.cast(tf.not_equal(ids, 0), tf.float32)[..., tf.newaxis]  # [1, M, 1]
        cache = tf.zeros(self.cache_shape)
        outputs = []
        for t in range(self.context):  # unrolled: builtin ops only, no while loop
            out, cache = self._run_cells(x[:, t], cache, real[:, t])
            outputs.append(out)
        return {LOGITS: self._logits(tf.stack(outputs, axis=1)), CACHE: cache}

    def _recurrent_decode(self, token, cache, position):
        del position  # a recurrent state needs no position
        out, cache = self._run_cells(self.model.get_layer("token_embedding")(token)[:, 0],
                                     cache)
        return {LOGITS: self._logits(out), CACHE: cache}


def save_step_functions(steps: StepFunctions, path: str) -> None:
    """A SavedModel with the ``prefill`` and ``decode`` signatures (written atomically)."""
    with atomic_path(path, is_dir=True) as tmp:
        tf.saved_model.save(steps, tmp, signatures=steps.signatures())


# --- TFLite ------------------------------------------------------------------------------
def _configure(converter, quantization: str, representative) -> None:
    if quantization in ("dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "dynamic":
        # One scale per weight matrix instead of one per output channel: per-channel scales
        # (a float32 scale and an int64 zero point per channel) cost 112 KB in the 0.8M GPT's
        # file, stored once per signature because a TFLite tensor belongs to one subgraph;
        # per tensor the file is 11% smaller and its test bits per character moved by
        # +0.004% (/work/runs/lmship/dyn_variants.py). The converter has no public switch.
        converter._experimental_disable_per_channel = True
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        # Integer kernels where LiteRT has them (calibrated on real prefill and decode calls),
        # float where it has none; the signatures' inputs and outputs (ids, cache, logits)
        # stay int32/float32 so the app's loop is the same for every file.
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]


def calibration_calls(steps: StepFunctions, windows, decode_steps: int = 4):
    """Representative ``(signature, inputs)`` calls for int8 calibration: each token window
    prefilled with a prompt cut at a varying length, then ``decode_steps`` decode calls
    continuing the window's own text."""
    m = steps.context
    calls = []
    for i, window in enumerate(windows):
        k = m // 4 + (i * 7919) % max(1, m - m // 4 - decode_steps)
        ids = np.zeros((1, m), np.int32)
        ids[0, :k] = window[:k]
        calls.append((PREFILL, {IDS: ids}))
        cache = steps.prefill(tf.constant(ids))[CACHE]
        for j in range(decode_steps):
            if k + j >= len(window):
                break
            inputs = {TOKEN: np.array([[window[k + j]]], np.int32), CACHE: cache.numpy(),
                      POSITION: np.array([k + j], np.int32)}
            calls.append((DECODE, inputs))
            cache = steps.decode(**{n: tf.constant(v) for n, v in inputs.items()})[CACHE]
    return calls


def to_lm_tflite(saved_model_dir: str, quantization: str, name: str,
                 allow_flex: bool = False, calibration=None) -> bytes:
    """The SavedModel's ``prefill``/``decode`` as one TFLite file (builtin ops only unless
    ``allow_flex``)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=[PREFILL, DECODE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if allow_flex:
        converter.target_spec.supported_ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    _configure(converter, quantization, calibration and (lambda: iter(calibration)))
    try:
        if quantization == "int8":
            return _int8_keeping_float_nodes(converter)
        return converter.convert()
    except Exception as e:  # ConverterError carries the MLIR diagnostics
        ops = _flex_ops(str(e))
        if ops and not allow_flex:
            raise UserError(f"{name}: TFLite conversion ({quantization}) needs TensorFlow ops "
                            f"builtin TFLite lacks: {', '.join(ops)}. Fix: pass --allow_flex "
                            "(the app must then link the Flex delegate).") from None
        raise UserError(f"{name}: TFLite conversion ({quantization}) failed: "
                        f"{str(e).strip().splitlines()[-1][:500]}") from e


def float_node_names(calibrated: bytes) -> List[str]:
    """The tensors of a calibrated file that an int8 file keeps in float: the rotary angles
    (lm_graph.ROTARY_ANGLES; the file's second signature spells them with a suffix digit)."""
    from tensorflow.lite.tools import flatbuffer_utils
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    names = {t.name.decode() for graph in model.subgraphs for t in graph.tensors}
    return sorted(n for n in names if re.fullmatch(re.escape(ROTARY_ANGLES) + r"\d*", n))


def _int8_keeping_float_nodes(converter) -> bytes:
    """Full-integer conversion with :func:`float_node_names` left in float: calibrate, then
    quantize with those nodes denylisted. The converter has no public switch for a node
    denylist; this is the call ``tf.lite.experimental.QuantizationDebugger``'s
    ``get_nondebug_quantized_model`` makes with ``QuantizationDebugOptions(denylisted_nodes)``
    (without building its instrumented debug model, which a two-signature file trips)."""
    from tensorflow.lite.python import convert
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    return convert.mlir_quantize(calibrated, disable_per_channel=False,
                                 denylisted_nodes=float_node_names(calibrated) or None)


def lm_file_name(fmt: str) -> str:
    """``tflite_int8`` -> ``model_int8.tflite``; ``onnx`` -> ``onnx`` (a folder of two)."""
    if fmt.startswith("tflite_"):
        return f"model_{fmt[len('tflite_'):]}.tflite"
    return {"onnx": "onnx", "saved_model": "saved_model"}[fmt]


def _tflite_writer(quantization: str):
    def write(ctx, path: str) -> Dict:
        saved, calibration = ctx["int8"]() if quantization == "int8" else \
            (ctx["saved_model"], None)
        data = to_lm_tflite(saved, quantization, ctx["name"], ctx["allow_flex"], calibration)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
        return {"quantization": quantization, "signatures": [PREFILL, DECODE]}
    return write


for _fmt in TFLITE_FORMATS:
    LM_FORMATS.register(_fmt)(_tflite_writer(_fmt[len("tflite_"):]))


@LM_FORMATS.register("saved_model")
def _saved_model(ctx, path: str) -> Dict:
    shutil.copytree(ctx["saved_model"], path, dirs_exist_ok=True)
    return {"signatures": [PREFILL, DECODE]}


@LM_FORMATS.register("onnx")
def _onnx(ctx, path: str) -> Dict:
    import tf2onnx
    from slm_tf.export.onnx import CUSTOM_OP_HANDLERS, OPSET
    steps = ctx["steps"]
    # ONNX names every value once, so decode's output cache is "new_cache" there.
    renamed = lambda out: {LOGITS: out[LOGITS], ONNX_NEW_CACHE: out[CACHE]}
    decode = tf.function(lambda token, cache, position: renamed(steps.decode(token, cache,
                                                                              position)))
    with atomic_path(path, is_dir=True) as tmp:
        for name, fn, spec in ((PREFILL, steps.prefill, steps.prefill.input_signature),
                               (DECODE, decode, steps.decode.input_signature)):
            try:
                proto, _ = tf2onnx.convert.from_function(
                    fn, input_signature=spec, opset=OPSET,
                    custom_op_handlers=CUSTOM_OP_HANDLERS)
            except Exception as e:
                raise UserError(f"{ctx['name']}: ONNX conversion of {name} failed: "
                                f"{str(e).strip()[-500:]}") from e
            with open(os.path.join(tmp, f"{name}.onnx"), "wb") as f:
                f.write(proto.SerializeToString())
    return {"signatures": [PREFILL, DECODE]}


LM_FORMATS.check_complete()


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path)
                   for f in fs)
    return os.path.getsize(path)


@EXPORTERS.register("lm")
def export_lm(run: Run, cfg: ExportConfig, out: str) -> Dict:
    """Writes the LM's step-function files, the Android bundle and the manifest fields."""
    import time
    from absl import logging
    from slm_tf.export.lm_bundle import write_lm_bundle
    from slm_tf.tasks import get_task
    import dataclasses
    run = dataclasses.replace(run, model=step_model(run))
    steps = StepFunctions(run.model)
    n_windows = max(1, cfg.calibration_examples // 5)  # each window gives 5 calls
    files = []
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        save_step_functions(steps, saved)

        def int8_saved_model():
            # The int8 file's graph masks scores to a floor instead of adding -1e9
            # (lm_graph.INT8_MASK_FLOOR), so it is its own SavedModel, calibrated on its own
            # calls.
            int8_steps = StepFunctions(run.model, int8_safe=True)
            path = os.path.join(tmp, "saved_model_int8")
            save_step_functions(int8_steps, path)
            windows = get_task(run.task).calibration_inputs(run, n_windows)
            return path, calibration_calls(int8_steps, windows)

        ctx = {"steps": steps, "saved_model": saved, "name": run.model.name,
               "allow_flex": cfg.allow_flex, "int8": int8_saved_model}
        for fmt in cfg.formats:
            start = time.time()
            path = os.path.join(out, lm_file_name(fmt))
            info = LM_FORMATS.get(fmt)(ctx, path)
            files.append({"format": fmt, "path": lm_file_name(fmt), "file_bytes": _size(path),
                          "seconds": round(time.time() - start, 2), **info})
            logging.info("exported %s: %s (%d bytes, %.1f s)", fmt, path,
                         files[-1]["file_bytes"], files[-1]["seconds"])
    manifest = {**base_manifest(run, cfg, out, files),
                "cache_shape": [int(d) for d in steps.cache_shape],
                "eod_id": eod_id(run.tokenizer), "architecture": run.model.arch}
    chosen = bundle_choice(cfg, files)
    if chosen:
        bundle = write_lm_bundle(out, os.path.join(out, lm_file_name(chosen)), chosen, run,
                                 steps.cache_shape)
        manifest["android"] = {"dir": os.path.basename(bundle), "format": chosen}
    return manifest

