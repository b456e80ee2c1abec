"""Run-folder semantics: a complete run is refused unless --overwrite (which clears what was
derived from the old model), an incomplete one resumes, and an export knows its model."""
import json
import os
import shutil

import pytest

from conftest import run_script
from slm_tf.errors import UserError
from slm_tf.train import artifacts
from slm_tf.train.trainer import TrainConfig, start_run

COMPLETE = ("model.keras", "saved_model/", "tokenizer/", "labels.json", "config.json",
            "metrics.json")
DERIVED = ("export/model_float.tflite", "eval/banking77_test.json", "logs/train/events.x",
           "checkpoints/backup/chief/ckpt", "compression.json")


def _make(root, names):
    for name in names:
        path = os.path.join(root, name)
        if name.endswith("/"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "w").close()


def _run_dir(tmp_path, complete=True):
    run = str(tmp_path / "run")
    _make(run, (COMPLETE if complete else COMPLETE[2:5]) + DERIVED)
    return run


def test_a_complete_run_is_refused_without_overwrite(tmp_path):
    run = _run_dir(tmp_path)
    with pytest.raises(UserError, match=r"already holds a complete run.*--overwrite"):
        start_run(TrainConfig(output_dir=run))
    for name in COMPLETE + DERIVED:  # nothing was touched
        assert os.path.exists(os.path.join(run, name)), name


def test_overwrite_clears_the_model_and_everything_derived_from_it(tmp_path):
    run = _run_dir(tmp_path)
    ctx = start_run(TrainConfig(output_dir=run, overwrite=True))
    assert not ctx.resuming
    left = sorted(os.listdir(run))
    assert left == ["config.json", "labels.json", "tokenizer"], left
    assert not artifacts.is_complete(run)


def test_an_incomplete_run_resumes_from_its_backup_and_keeps_its_logs(tmp_path):
    run = _run_dir(tmp_path, complete=False)  # no model.keras, no metrics.json: interrupted
    ctx = start_run(TrainConfig(output_dir=run))
    assert ctx.resuming
    for name in DERIVED:
        assert os.path.exists(os.path.join(run, name)), name


# --- through the scripts: retrain refused, --overwrite, a stale export, a copied run --------
TINY = ("--data=banking77", "--model=bow", "--embedding_dim=16", "--max_seq_len=24",
        "--vocab_size=800", "--epochs=1", "--validation_fraction=0.05", "--batch_size=128")


@pytest.mark.integration
def test_rerun_refused_overwrite_retrains_stale_export_refused_copy_benchmarks(tmp_path,
                                                                                data_dir):
    run = str(tmp_path / "run")
    train = (*TINY, f"--data_dir={data_dir}", f"--output_dir={run}")
    run_script("train", *train)
    run_script("export", f"--run_dir={run}", "--formats=tflite_float")
    manifest = json.load(open(os.path.join(run, "export", "export.json")))
    assert manifest["run_dir"] == ".."  # relative to the export: no absolute path stored

    # A copied run folder (run + export/) benchmarks on its own, the original gone.
    copy = str(tmp_path / "moved" / "run")
    shutil.copytree(run, copy)
    os.rename(run, str(tmp_path / "gone"))
    run_script("benchmark", f"--export_dir={copy}/export", "--latency_queries=5")
    assert os.path.exists(os.path.join(copy, "export", "benchmark.json"))
    os.rename(str(tmp_path / "gone"), run)

    # Rerunning into the complete run: one line naming the fix, nothing retrained.
    before = os.path.getmtime(os.path.join(run, "model.keras"))
    proc = run_script("train", *train, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "already holds a complete run" in proc.stderr and "--overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert os.path.getmtime(os.path.join(run, "model.keras")) == before

    # An export kept elsewhere goes stale when the run is retrained with --overwrite.
    elsewhere = str(tmp_path / "elsewhere")
    run_script("export", f"--run_dir={run}", "--formats=tflite_float",
               f"--output_dir={elsewhere}")
    run_script("train", *train, "--overwrite", "--seed=7")
    assert not os.path.exists(os.path.join(run, "export"))  # the old export went with the model
    assert artifacts.is_complete(run)
    proc = run_script("benchmark", f"--export_dir={elsewhere}", "--latency_queries=5",
                      check=False)
    assert proc.returncode == 2
    assert "is older than" in proc.stderr and "re-export" in proc.stderr, proc.stderr[-2000:]
    assert not os.path.exists(os.path.join(elsewhere, "benchmark.json"))


@pytest.mark.parametrize("strategy", ["mirrored", "multi_worker"])
def test_compress_and_online_distillation_reject_a_strategy_they_would_ignore(tmp_path,
                                                                              strategy):
    from slm_tf.compress.config import CompressConfig
    from slm_tf.compress.run import CompressExperiment, compress
    from slm_tf.data.config import DataConfig
    from slm_tf.distill.config import AugmentConfig, DistillConfig
    from slm_tf.distill.run import DistillExperiment, distill
    from slm_tf.models.config import ModelConfig
    from slm_tf.tokenizers.config import TokenizerConfig
    out = str(tmp_path / "out")
    tcfg = TrainConfig(output_dir=out, strategy=strategy)
    # distill.py runs under a strategy with cached teacher outputs (tests/test_multi_worker.py),
    # not with the teacher online.
    with pytest.raises(UserError, match=f"--strategy={strategy} needs the cached teacher"):
        distill(DistillExperiment(DataConfig(data="banking77"), TokenizerConfig(), ModelConfig(),
                                  tcfg, DistillConfig(teacher_dir=str(tmp_path / "t"),
                                                      cache_teacher=False), AugmentConfig()))
    with pytest.raises(UserError, match=f"--strategy={strategy} is not supported by compress"):
        compress(CompressExperiment(CompressConfig(run_dir=str(tmp_path / "r"), prune=0.5),
                                    tcfg))
    assert not os.path.exists(out)  # refused before anything was written
