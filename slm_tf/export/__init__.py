"""Export for deployment: TFLite (float, dynamic, float16, int8, from QAT), ONNX, SavedModel,
an Android-ready bundle, parity checks and a latency benchmark.

This package's ``__init__`` imports nothing: ``runtimes`` (the device side of the benchmark) and
``config`` (export.py's flags) must load without TensorFlow.
"""
