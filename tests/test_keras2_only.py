"""The package must run on Keras 2 (tf_keras) only: tfmot rejects Keras 3 layers.

(tfmot itself probes ``import keras`` while it loads and falls back to tf_keras; that probe is
not ours, so the check is on who imports Keras 3 and on which Keras our objects come from.)
"""
import os
import re
import subprocess
import sys

from conftest import REPO

MODULES = ["slm_tf", "slm_tf.data.pipeline", "slm_tf.tokenizers", "slm_tf.models",
           "slm_tf.train.trainer", "slm_tf.evaluation", "slm_tf.compress.run"]

PROBE = """
import builtins, sys
importers = []
_orig = builtins.__import__
def _hook(name, globals=None, *args, **kwargs):
    if name == "keras" or name.startswith("keras."):
        importers.append((globals or {}).get("__name__", "?"))
    return _orig(name, globals, *args, **kwargs)
builtins.__import__ = _hook
%s
import tensorflow as tf
from slm_tf.models import ModelConfig, build_model
model = build_model(ModelConfig(model="transformer"), 50, 3, 8)
print(sorted({m for m in importers if m.startswith(("slm_tf", "__main__"))}))
print(type(tf.keras.layers.Dense(1)).__module__.split(".")[0])
print(sorted({type(l).__module__.split(".")[0] for l in model.layers}))
"""


def test_no_module_of_ours_imports_keras3_and_every_layer_is_tf_keras():
    code = PROBE % "".join(f"import {m}\n" for m in MODULES)
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip().splitlines()
    assert lines[-3] == "[]", f"these modules import Keras 3: {lines[-3]}"
    assert lines[-2] == "tf_keras"
    assert set(eval(lines[-1])) <= {"tf_keras", "slm_tf"}


def test_sources_never_import_keras3():
    offenders = []
    for root in ("slm_tf", "scripts", "tests"):
        for d, _, files in os.walk(os.path.join(REPO, root)):
            for f in files:
                if f.endswith(".py"):
                    text = open(os.path.join(d, f), encoding="utf-8").read()
                    if re.search(r"^\s*(import keras\b|from keras\b)", text, re.M):
                        offenders.append(f)
    assert not offenders

