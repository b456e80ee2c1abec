"""What compression did: per-layer sparsity, m:n pattern checks, distinct values, and sizes
(raw and gzip) of the weights and of the TFLite file."""
import gzip
from typing import Dict, List, Optional, Tuple

import numpy as np
import tf_keras as keras

from slm_tf.compress.quantization import float_layer, is_quantized, quantize_scope


def gzip_size(data: bytes) -> int:
    """Bytes after gzip -9 (fixed mtime, so the number is reproducible)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def follows_m_by_n(kernel: np.ndarray, m: int, n: int) -> bool:
    """True when every n consecutive input weights of every output hold at least m zeros.

    Kernels are ``[..., C_in, C_out]``; groups run along ``C_in`` for each output and
    position, as in TFLite's ``[C_out, ..., C_in]`` layout (tfmot pads a short last group).
    """
    rows = np.moveaxis(np.asarray(kernel), -1, 0).reshape(-1, kernel.shape[-2])
    pad = (-rows.shape[1]) % n
    groups = np.pad(rows, [(0, 0), (0, pad)]).reshape(rows.shape[0], -1, n)
    return bool((np.count_nonzero(groups, axis=-1) <= n - m).all())


def _kernels(layer) -> List:
    # Float matrices and tables (rank >= 2); biases (a GRU's is [2, 3 x units]), norms,
    # quantizer ranges and the integer cluster indices of cluster-preserving QAT are left out.
    return [w for w in layer.weights if len(w.shape) >= 2 and w.dtype.is_floating
            and not w.name.split(":")[0].endswith("bias")]


def layer_sparsity(model: keras.Model, m_by_n: Optional[Tuple[int, int]] = None,
                   count_unique: bool = False) -> List[Dict]:
    """One row per kernel: its layer, shape, parameters, zeros, sparsity, and (on request)
    its distinct values and whether it follows the ``m_by_n`` pattern."""
    rows = []
    for layer in model.layers:
        for weight in _kernels(layer):
            value = weight.numpy()
            zeros = int(value.size - np.count_nonzero(value))
            row = {"layer": float_layer(layer).name, "weight": weight.name.split(":")[0],
                   "shape": list(value.shape), "params": int(value.size), "zeros": zeros,
                   "sparsity": zeros / value.size}
            if count_unique:
                row["distinct_values"] = int(np.unique(value).size)
            if m_by_n:
                row[f"follows_{m_by_n[0]}:{m_by_n[1]}"] = follows_m_by_n(value, *m_by_n)
            rows.append(row)
    return rows


def overall_sparsity(rows: List[Dict]) -> float:
    """Zeros over parameters across all kernels and tables."""
    params = sum(r["params"] for r in rows)
    return sum(r["zeros"] for r in rows) / params if params else 0.0


def weights_blob(model: keras.Model) -> bytes:
    """Every weight's raw bytes, in order (what a weights file stores, minus its framing)."""
    return b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())


def tflite_blob(model: keras.Model, seq_len: int, quantization: str) -> bytes:
    """The model as a TFLite flatbuffer (through the exporter; QAT models need the scope)."""
    from slm_tf.export.tflite import to_tflite
    with quantize_scope():
        return to_tflite(model, quantization, seq_len)


def size_report(model: keras.Model, seq_len: int, tflite: bool = True) -> Dict:
    """Raw and gzip bytes of the weights and (optionally) of the TFLite file: float for a
    float model, int8 for a quantization-aware one."""
    blob = weights_blob(model)
    out = {"weights_bytes": len(blob), "weights_gzip_bytes": gzip_size(blob)}
    if tflite:
        quantization = "int8" if is_quantized(model) else "float"
        data = tflite_blob(model, seq_len, quantization)
        out.update(tflite_quantization=quantization, tflite_bytes=len(data),
                   tflite_gzip_bytes=gzip_size(data))
    return out
