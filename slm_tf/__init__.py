"""slm_tf: train, distill, compress and export small text models with Keras 2 / TensorFlow.

Importing this package pins Keras to Keras 2 (``tf_keras``): tfmot only accepts Keras 2
layers, so ``TF_USE_LEGACY_KERAS`` must be set before TensorFlow is first imported. Every
module imports Keras as ``import tf_keras as keras``; never ``import keras`` (Keras 3).
"""
import os

if "tensorflow" not in __import__("sys").modules:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
elif os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    raise ImportError(
        "slm_tf must be imported before tensorflow (or run with TF_USE_LEGACY_KERAS=1): "
        "tfmot needs Keras 2 (tf_keras), and TensorFlow fixes its Keras at first import.")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
