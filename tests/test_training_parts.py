"""Optimizer schedule, metrics, config <-> flags."""
import os

import numpy as np
import pytest
from absl import flags

from conftest import REPO
from slm_tf.config import define_flags, from_flags, parse_flagfile, validate
from slm_tf.data.config import DataConfig
from slm_tf.errors import UserError
from slm_tf.recipes import expand_flagfiles
from slm_tf.models import ModelConfig
from slm_tf.tokenizers import TokenizerConfig
from slm_tf.train.metrics import classification_report, expected_calibration_error
from slm_tf.train.optim import WarmupDecay, make_optimizer
from slm_tf.train.trainer import TrainConfig
from slm_tf.peft.config import FineTuneConfig
from slm_tf.trust.config import DPConfig

CONFIGS = (DataConfig, TokenizerConfig, ModelConfig, TrainConfig, DPConfig, FineTuneConfig)


def test_warmup_then_linear_and_cosine_decay():
    lin = WarmupDecay(1.0, warmup_steps=10, total_steps=110, decay="linear")
    assert float(lin(0)) == 0.0 and float(lin(5)) == pytest.approx(0.5)
    assert float(lin(10)) == pytest.approx(1.0) and float(lin(60)) == pytest.approx(0.5)
    assert float(lin(110)) == pytest.approx(0.0) and float(lin(500)) == pytest.approx(0.0)
    cos = WarmupDecay(1.0, 10, 110, "cosine")
    assert float(cos(60)) == pytest.approx(0.5) and float(cos(35)) == pytest.approx(0.8535534)
    assert WarmupDecay.from_config(lin.get_config()).get_config() == lin.get_config()


def test_adamw_excludes_norms_and_biases_from_decay():
    import tensorflow as tf
    opt = make_optimizer(1e-3, 0.1, 1, 10, "linear")
    kernel = tf.Variable(np.ones((2, 2), np.float32), name="dense/kernel")
    bias = tf.Variable(np.ones(2, np.float32), name="dense/bias")
    gamma = tf.Variable(np.ones(2, np.float32), name="block0_ffn_norm/gamma")
    opt.build([kernel, bias, gamma])
    assert not opt._use_weight_decay(bias) and not opt._use_weight_decay(gamma)
    assert opt._use_weight_decay(kernel)


def test_gradient_clipping_per_variable_or_global_by_hand():
    import tensorflow as tf
    # Gradients (3, 4) and (0, 12): norms 5 and 12, global norm 13. Clipped to 6.5: per
    # variable only the second shrinks (to norm 6.5); globally both halve, keeping the update's
    # direction.
    grads = [tf.constant([3.0, 4.0]), tf.constant([0.0, 12.0])]
    per_variable = make_optimizer(1e-3, 0.0, 0, 10, "linear", clip_norm=6.5)
    together = make_optimizer(1e-3, 0.0, 0, 10, "linear", clip_norm=6.5, clip_global=True)
    none = make_optimizer(1e-3, 0.0, 0, 10, "linear", clip_norm=0.0)
    clip = lambda opt: [g.numpy() for g in opt._clip_gradients(grads)]
    np.testing.assert_allclose(clip(per_variable)[0], [3.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(clip(per_variable)[1], [0.0, 6.5], rtol=1e-6)
    np.testing.assert_allclose(clip(together)[0], [1.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(clip(together)[1], [0.0, 6.0], rtol=1e-6)
    np.testing.assert_allclose(clip(none)[1], [0.0, 12.0])
    # The flags reach the optimizer.
    from slm_tf.train.optim import optimizer_for
    opt = optimizer_for(TrainConfig(output_dir="x", clip_norm=6.5, clip_global=True), 10)
    np.testing.assert_allclose(clip(opt)[0], [1.5, 2.0], rtol=1e-6)


def test_classification_report_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    logits = np.eye(3)[pred] * 5
    r = classification_report(y, logits, ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    # a: P=1/2 R=1/2 F=1/2; b: P=2/3 R=1 F=0.8; c: P=1 R=1/2 F=2/3
    assert r["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert r["per_class"]["b"] == {"precision": pytest.approx(2 / 3), "recall": 1.0,
                                   "f1": pytest.approx(0.8), "support": 2}
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_ece_is_zero_when_confidence_matches_accuracy():
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.array([1, 1, 1, 1])) == pytest.approx(0.75)


def test_flags_mirror_dataclasses_and_validate():
    fv = flags.FlagValues()
    for cls in CONFIGS:
        define_flags(cls, fv)
    fv(["x", "--model=bilstm", "--epochs=3", "--kernel_sizes=2,3", "--output_dir=o"])
    assert from_flags(ModelConfig, fv).model == "bilstm"
    assert from_flags(ModelConfig, fv).kernel_sizes == ["2", "3"]
    assert from_flags(TrainConfig, fv).epochs == 3
    assert all(fv[n].help and fv[n].help != n for cls in CONFIGS
               for n in cls.__dataclass_fields__)
    with pytest.raises(flags.IllegalFlagValueError, match="--epochs must be > 0"):
        fv2 = flags.FlagValues()
        define_flags(TrainConfig, fv2)
        fv2(["x", "--epochs=0", "--output_dir=o"])
    with pytest.raises(UserError, match="must be in"):
        validate(DataConfig(validation_fraction=1.5))


def _flagfiles(kind):
    """Shipped flagfiles of one kind: pipeline (names recipes), compress (names a run),
    pretrain (names an objective) or training recipes (everything else)."""
    out = []
    for f in sorted(os.listdir(os.path.join(REPO, "configs"))):
        if not f.endswith(".flags"):
            continue
        # The flags the recipe sets, as parsing reads them: a comment may quote a pipeline command.
        text = "\n".join(expand_flagfiles(["recipe", f"--flagfile={f}"],
                                          os.path.join(REPO, "configs")))
        found = ("pipeline" if "--student_recipe" in text or "_pipeline." in f else
                 "compress" if "--run_dir" in text or "compress" in f else
                 "pretrain" if "--objective" in text else "train")
        if found == kind:
            out.append(f)
    return out


@pytest.mark.parametrize("recipe", _flagfiles("train"))
def test_every_shipped_recipe_parses(recipe):
    data, tok, model, train, _, _ = parse_flagfile(
        CONFIGS, os.path.join(REPO, "configs", recipe), ["--output_dir=x"])
    assert model.model in ("transformer", "cnn", "bilstm", "bigru", "bow", "bert", "gpt",
                           "lstm_lm", "gru_lm")
    # A language-model recipe names the lm task and a reversible tokenizer.
    assert (train.task == "lm") == (model.model in ("gpt", "lstm_lm", "gru_lm"))
    if train.task == "lm":
        assert tok.tokenizer in ("char_exact", "sentencepiece")
    assert data.max_seq_len > 0 and train.epochs > 0
    assert isinstance(train.auto_recipe, bool)  # a switch, never resolved as a recipe path


@pytest.mark.parametrize("flagfile", _flagfiles("pipeline"))
def test_every_shipped_pipeline_parses_and_names_existing_recipes(flagfile, monkeypatch):
    monkeypatch.chdir(REPO)  # recipe and nested flagfile paths are relative to the repo root
    from slm_tf.data.config import DataConfig
    from slm_tf.pipeline.config import PipelineConfig
    pipe, data = parse_flagfile((PipelineConfig, DataConfig),
                                os.path.join(REPO, "configs", flagfile), ["--output_dir=x"])
    for recipe in (pipe.teacher_recipe, pipe.student_recipe, pipe.compress_recipe):
        assert os.path.exists(os.path.join(REPO, recipe)), recipe
    # A pipeline names a registered dataset or a corpus under the shared data folder (read
    # from the repo root, never shipped in the package).
    from slm_tf.data.sources import DATASETS
    assert data.data in DATASETS or data.data.startswith("../shared/data/"), data.data
    if pipe.task == "lm":
        assert data.data not in DATASETS  # an LM pipeline reads plain text, not a dataset
    assert pipe.export_formats


@pytest.mark.parametrize("flagfile", _flagfiles("pretrain"))
def test_every_shipped_pretrain_recipe_parses(flagfile):
    from slm_tf.peft.config import PretrainConfig
    pre, data, tok, model, train = parse_flagfile(
        (PretrainConfig,) + CONFIGS[:4], os.path.join(REPO, "configs", flagfile),
        ["--output_dir=x"])
    assert pre.objective in ("mlm", "clm") and data.data and train.epochs > 0


@pytest.mark.parametrize("flagfile", _flagfiles("compress"))
def test_every_shipped_compress_recipe_parses(flagfile):
    from slm_tf.compress.config import CompressConfig
    from slm_tf.compress.modes import mode_for
    from slm_tf.train.trainer import TrainConfig
    ccfg, tcfg = parse_flagfile((CompressConfig, TrainConfig),
                                os.path.join(REPO, "configs", flagfile),
                                ["--run_dir=runs/x", "--output_dir=runs/y"])
    assert mode_for(ccfg).name and tcfg.epochs > 0


def _fit_tiny(run_dir, callbacks=(), **train):
    """Three steps per epoch of a tiny classifier through the trainer's ``fit`` on the run
    schedule (AdamW, warmup + linear decay over all epochs); returns the model and the fit."""
    import tensorflow as tf
    import tf_keras as keras

    from slm_tf.tasks import get_task
    from slm_tf.train.optim import optimizer_for
    from slm_tf.train.trainer import fit, start_run
    tcfg = TrainConfig(output_dir=run_dir, seed=3, **{"epochs": 1, **train})
    ctx = start_run(tcfg)
    rng = np.random.RandomState(0)
    x, y = rng.normal(size=(24, 5)).astype("float32"), rng.randint(0, 3, 24)
    model = keras.Sequential([keras.layers.Dense(3, input_shape=(5,),
                                                 kernel_initializer="ones")])
    model.compile(optimizer_for(tcfg, 3 * tcfg.epochs),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    return model, fit(model, ds, ds, tcfg, ctx, 3, 8, task=get_task("classification"),
                      extra_callbacks=callbacks)


def test_jit_compile_trains_the_same_weights_with_an_xla_step(tmp_path):
    plain, _ = _fit_tiny(str(tmp_path / "plain"), epochs=2)
    xla, _ = _fit_tiny(str(tmp_path / "xla"), epochs=2, jit_compile=True)
    # The flag reaches Keras's train step (compiled with XLA), and XLA changes only rounding.
    assert xla.jit_compile and not plain.jit_compile
    np.testing.assert_allclose(xla.get_weights()[0], plain.get_weights()[0], atol=1e-5)
    assert not np.allclose(plain.get_weights()[0], 1.0)  # it did train


def test_time_fraction_moves_the_schedule_on_when_time_is_further_than_steps():
    schedule = WarmupDecay(1.0, 0, 100, "linear")
    assert float(schedule(10)) == pytest.approx(0.9)
    schedule.time_fraction.assign(0.5)  # half the budget spent at step 10: lr of step 50
    assert float(schedule(10)) == pytest.approx(0.5)
    assert float(schedule(80)) == pytest.approx(0.2)  # steps further on than time: steps
    schedule.time_fraction.assign(1.0)
    assert float(schedule(10)) == pytest.approx(0.0)


def test_a_spent_time_budget_stops_training_annealed_and_counts_time_before_a_crash(tmp_path):
    import json
    import time

    from slm_tf.train.callbacks import TIME_SPENT
    from slm_tf.train.optim import current_learning_rate, learning_rate_schedule
    # 0.5 s budget, 10,000 epochs allowed: time, not epochs, ends the run, at learning rate 0.
    run = tmp_path / "budget"
    start = time.monotonic()
    model, result = _fit_tiny(str(run), epochs=10000, train_minutes=0.5 / 60)
    assert result.epochs_run < 10000 and time.monotonic() - start < 120
    schedule = learning_rate_schedule(model.optimizer)
    assert float(schedule.time_fraction.numpy()) == 1.0
    # The schedule alone would still be warming up (step < 10% of 30,000): time annealed it.
    assert model.optimizer.iterations.numpy() < 3000
    assert current_learning_rate(model.optimizer) == pytest.approx(0.0, abs=1e-9)
    spent = json.loads((run / "checkpoints" / TIME_SPENT).read_text())["seconds"]
    assert spent >= 0.5
    # Time spent before a crash counts: crash at the end of the second epoch, record that the
    # whole minute was spent by then, rerun: it resumes and stops after its first batch.
    import tf_keras as keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("simulated crash")

    again = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit_tiny(str(again), callbacks=[Crash()], epochs=5, train_minutes=1.0)
    state = again / "checkpoints" / TIME_SPENT
    assert json.loads(state.read_text())["seconds"] < 60
    state.write_text(json.dumps({"seconds": 60.0}))
    _, result = _fit_tiny(str(again), epochs=5, train_minutes=1.0)
    assert result.resumed_at_epoch == 2 and result.batches == 1


_SEEDED_RUNS = """
import sys
from slm_tf.config import parse_flagfile
from slm_tf.data.config import DataConfig
from slm_tf.models import ModelConfig
from slm_tf.tokenizers import TokenizerConfig
from slm_tf.train.config import ExperimentConfig, TrainConfig
from slm_tf.train.trainer import train
recipe, csv, data_dir, out = sys.argv[1:5]
for seed in sys.argv[5:]:  # one process, one run after another (as bench_distill's arms)
    train(ExperimentConfig(*parse_flagfile(
        (DataConfig, TokenizerConfig, ModelConfig, TrainConfig), recipe,
        [f"--data={csv}", f"--output_dir={out}/seed{seed}", f"--data_dir={data_dir}",
         f"--seed={seed}", "--epochs=2", "--nobaseline", "--vocab_size=200"])))
"""


@pytest.mark.integration
def test_a_seed_gives_the_same_weights_first_in_its_process_or_after_another_run(tmp_path):
    """What README's reproducibility section promises: a run is a function of its seed, not of
    the runs trained before it in the same process (every run reseeds Python, numpy and TF)."""
    import subprocess
    import sys

    from conftest import write_csv
    from slm_tf.train.artifacts import load_keras_model
    from tiny_run import labelled_rows
    csv = write_csv(tmp_path / "d.csv", labelled_rows(600))
    recipe = os.path.join(REPO, "configs", "banking77_student.flags")
    for out, seeds in (("alone", ["3"]), ("after", ["1", "3"])):
        subprocess.run([sys.executable, "-c", _SEEDED_RUNS, recipe, csv, str(tmp_path / "tfds"),
                        str(tmp_path / out), *seeds], check=True, capture_output=True)
    weights = {name: load_keras_model(str(tmp_path / name / "model.keras")).get_weights()
               for name in ("alone/seed3", "after/seed3", "after/seed1")}
    assert len(weights["alone/seed3"]) > 5
    for a, b in zip(weights["alone/seed3"], weights["after/seed3"]):
        np.testing.assert_array_equal(a, b)
    # ...and the seed matters (a test that would pass with every seed giving one model is none).
    assert any(not np.array_equal(a, b)
               for a, b in zip(weights["alone/seed3"], weights["after/seed1"]))
