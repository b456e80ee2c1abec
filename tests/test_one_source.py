"""One source of truth: the KD defaults agree everywhere, and every registry's names are
exactly the flag choices its TensorFlow-free config offers."""
import dataclasses
import inspect

import pytest
from absl import flags

from slm_tf.compress.config import CompressConfig
from slm_tf.config import define_flags
from slm_tf.distill.config import DistillConfig
from slm_tf.export.config import ExportConfig
from slm_tf.models.config import ModelConfig
from slm_tf.pipeline.config import PipelineConfig
from slm_tf.registry import Registry
from slm_tf.tokenizers.config import TokenizerConfig
from slm_tf.train.config import TrainConfig


def _field(cls, name):
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def test_kd_temperature_and_alpha_defaults_agree_everywhere():
    from slm_tf.distill.distiller import Distiller
    signature = inspect.signature(Distiller.__init__).parameters
    kd, pipeline = DistillConfig(), PipelineConfig()
    values = {"DistillConfig": (kd.temperature, kd.alpha),
              "PipelineConfig": (pipeline.temperature, pipeline.alpha),
              "Distiller": (signature["temperature"].default, signature["alpha"].default)}
    assert len(set(values.values())) == 1, values
    # compress.py falls back to DistillConfig's values; its help must name the same numbers.
    t, a = values["DistillConfig"]
    assert f"else {t:g})" in _field(CompressConfig, "temperature").metadata["help"]
    assert f"else {a:g})" in _field(CompressConfig, "alpha").metadata["help"]


def _enum_values(cls, name):
    fv = flags.FlagValues()
    define_flags(cls, fv)
    return sorted(fv[name].parser.enum_values)


@pytest.mark.parametrize("registry_path, cls, flag", [
    ("slm_tf.models.zoo:MODELS", ModelConfig, "model"),
    ("slm_tf.tokenizers.registry:TOKENIZERS", TokenizerConfig, "tokenizer"),
    ("slm_tf.train.strategies:STRATEGIES", TrainConfig, "strategy"),
])
def test_registry_names_are_the_flag_choices(registry_path, cls, flag):
    import importlib
    module, name = registry_path.split(":")
    registry = getattr(importlib.import_module(module), name)
    assert registry.names() == _enum_values(cls, flag)


def test_export_formats_are_the_registered_ones():
    from slm_tf.export.run import FORMATS
    assert sorted(ExportConfig().formats) == FORMATS.names()
    fv = flags.FlagValues()
    define_flags(ExportConfig, fv)
    fv(["export", "--formats=onnx,tflite_int8"])
    with pytest.raises(flags.IllegalFlagValueError, match="--formats must be a list of"):
        fv(["export", "--formats=onnx,tflite_int4"])
    assert set(PipelineConfig().export_formats) <= set(FORMATS.names())


def test_a_registry_refuses_undeclared_names_and_reports_unregistered_ones():
    reg = Registry("widget", ("a", "b"))
    reg.register("a")(object)
    with pytest.raises(ValueError, match="'c' is not declared"):
        reg.register("c")(object)
    with pytest.raises(ImportError, match=r"\['b'\] are declared but not registered"):
        reg.check_complete()
    reg.register("b")(object)
    reg.check_complete()
    assert reg.names() == ["a", "b"]
