"""Export for deployment: TFLite (float, dynamic, float16, int8, from QAT), ONNX, SavedModel,
an Android-ready bundle, parity checks and a latency benchmark.

This package's ``__init__`` imports nothing: ``runtimes`` and ``bundle_client`` must load
without TensorFlow (they are what runs on the device side of the benchmark and the bundle test).
"""
