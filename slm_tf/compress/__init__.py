"""Compression with tfmot for every zoo model: magnitude pruning (incl. m:n), quantization-aware
training, weight clustering, and tfmot's collaborative combinations of them.

- :mod:`slm_tf.compress.config`: ``CompressConfig`` (mirrored by compress.py's flags).
- :mod:`slm_tf.compress.modes`: the registry of modes and ``compress_model``.
- :mod:`slm_tf.compress.pruning`, ``clustering``, ``quantization``: the tfmot stages.
- :mod:`slm_tf.compress.report`: sparsity, patterns and sizes.
- :mod:`slm_tf.compress.run`: compress a finished run into a new run directory.
"""
