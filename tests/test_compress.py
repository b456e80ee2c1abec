"""Compression with tfmot: every zoo architecture x {prune, prune 2:4, QAT, PQAT, cluster}
builds, trains a few steps, strips, saves, reloads, converts to TFLite and runs in LiteRT;
sparsity, m:n patterns and clusters are checked on the stripped weights; the other modes and
the config/flag errors; compress.py end to end with a teacher."""
import math

import numpy as np
import pytest
import tf_keras as keras
from ai_edge_litert.interpreter import Interpreter

from slm_tf.compress import quantization
from slm_tf.compress.config import CompressConfig, parse_layer_sparsity
from slm_tf.compress.modes import MODES, compress_model, mode_for
from slm_tf.compress.report import follows_m_by_n, layer_sparsity, tflite_blob
from slm_tf.errors import UserError
from slm_tf.models import ModelConfig, build_model

VOCAB, CLASSES, LENGTH, BATCH = 64, 3, 8, 16
ARCHS = {
    "transformer": ModelConfig(model="transformer", hidden_dim=16, ff_dim=32, num_heads=2,
                               num_layers=1, dropout=0.0),
    "cnn": ModelConfig(model="cnn", embedding_dim=16, num_filters=8, kernel_sizes=["2", "3"],
                       hidden_dim=0, dropout=0.0),
    "bilstm": ModelConfig(model="bilstm", embedding_dim=8, hidden_dim=8, num_layers=1,
                          dropout=0.0),
    "bigru": ModelConfig(model="bigru", embedding_dim=8, hidden_dim=8, num_layers=1,
                         dropout=0.0),
    # With hashed bigrams (the automatic recipe's bag of n-grams): integer ops in the graph.
    "bow": ModelConfig(model="bow", embedding_dim=16, hidden_dim=16, bigram_buckets=32,
                       dropout=0.0),
    # Integer n-gram hashing and counting, a fixed IDF, scores scaled by the inverse norm.
    "tfidf": ModelConfig(model="tfidf", tfidf_buckets=512, ngram_orders=["1", "2"],
                         dropout=0.0),
    # Random init, no checkpoint: the graph is what matters here.
    "bert": ModelConfig(model="bert", hidden_dim=16, ff_dim=32, num_heads=2, num_layers=1,
                        dropout=0.0),
}
# Constant schedules updating masks every step, so a few steps reach the exact target.
PRUNE = dict(prune=0.5, prune_schedule="constant", prune_frequency=1)
MATRIX = {
    "prune": CompressConfig(run_dir="-", **PRUNE),
    "prune_2:4": CompressConfig(run_dir="-", structured="2:4", **PRUNE),
    "qat": CompressConfig(run_dir="-", qat=True),
    "pqat": CompressConfig(run_dir="-", qat=True, **PRUNE),
    "cluster": CompressConfig(run_dir="-", cluster=4),
}


def _toy(n=64, seed=0):
    """Token ids with trailing padding; the label is a function of the first token."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, VOCAB, (n, LENGTH)).astype("int32")
    for row, length in zip(ids, rng.randint(3, LENGTH + 1, n)):
        row[length:] = 0
    return ids, (ids[:, 0] % CLASSES).astype("int32")


def _fit_stage(log_dir):
    ids, y = _toy()

    def fit_stage(wrapped, stage, epochs):
        # Eager: for 8 steps of a tiny model, tracing a graph costs more than it saves.
        wrapped.compile(keras.optimizers.Adam(5e-3),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        run_eagerly=True)
        wrapped.fit(ids, y, batch_size=BATCH, epochs=epochs, verbose=0,
                    callbacks=stage.callbacks(str(log_dir / stage.name)))
    return fit_stage


def _litert(tflite: bytes, ids: np.ndarray) -> np.ndarray:
    runner = Interpreter(model_content=tflite).get_signature_runner()
    return np.concatenate([runner(ids=row[np.newaxis])["logits"] for row in ids])


def _compress(arch, cfg, tmp_path, epochs=2):
    keras.utils.set_random_seed(0)
    model = build_model(ARCHS[arch], VOCAB, CLASSES, LENGTH)
    steps = math.ceil(len(_toy()[0]) / BATCH)
    compressed, stages = compress_model(model, cfg, _fit_stage(tmp_path), steps, epochs,
                                        sample_ids=_toy()[0])
    return model, compressed, stages


def _rows_by_layer(model, **kwargs):
    rows = {}
    for row in layer_sparsity(model, **kwargs):
        rows.setdefault(row["layer"], []).append(row)
    return rows


# Every mode on the transformer (our attention layer is the hardest case for tfmot), and every
# other architecture through the two wrapper families a layer type needs its own support in:
# prune-preserving QAT (pruning + quantize configs) and clustering. 15 cases instead of 30.
CASES = ([("transformer", mode) for mode in MATRIX] +
         [(arch, mode) for arch in ARCHS if arch != "transformer" for mode in ("pqat", "cluster")])


@pytest.mark.integration
@pytest.mark.parametrize("arch,mode", CASES)
def test_every_architecture_compresses_saves_reloads_and_runs_in_litert(arch, mode, tmp_path):
    cfg = MATRIX[mode]
    model, compressed, stages = _compress(arch, cfg, tmp_path)
    qat = cfg.qat
    wrappers = {type(l).__name__ for l in compressed.layers} & {
        "PruneLowMagnitude", "ClusterWeights", "ClusterWeightsRNN", "ClusterAttention"}
    assert not wrappers, f"training wrappers left: {wrappers}"
    if qat:
        assert quantization.is_quantized(compressed)
    else:  # stripped and rebuilt as the zoo class train.py saves
        assert type(compressed) is type(model)

    m_by_n = (2, 4) if cfg.structured else None
    rows = _rows_by_layer(compressed, m_by_n=m_by_n, count_unique=True)
    for stage in stages:
        if stage.name == "prune":
            assert stage.plan, "nothing was pruned"
            for layer, target in stage.plan.items():
                for row in rows[layer]:  # every kernel of a pruned layer is pruned
                    if ":" in target:  # m:n: the pattern holds in every group of 4
                        assert row["follows_2:4"], (layer, row)
                        assert row["sparsity"] >= 0.5 - 1e-6
                    else:  # unstructured: the target, also after PQAT
                        assert row["sparsity"] == pytest.approx(float(target), abs=0.02), \
                            (layer, row)
        if stage.name == "cluster":
            assert stage.plan, "nothing was clustered"
            for layer, n in stage.plan.items():
                for row in rows[layer]:
                    assert row["distinct_values"] <= n, (layer, row)

    path = str(tmp_path / "model.keras")
    compressed.save(path)
    with quantization.quantize_scope():
        again = keras.models.load_model(path, compile=False)
    ids, _ = _toy(16, seed=1)
    want = compressed(ids, training=False).numpy()
    np.testing.assert_allclose(again(ids, training=False).numpy(), want, atol=1e-5)

    got = _litert(tflite_blob(again, LENGTH, "int8" if qat else "float"), ids)
    if qat:  # int8 kernels vs the fake-quant simulation: a few quantization steps apart
        spread = float(want.max() - want.min())
        assert np.abs(got - want).max() <= 0.05 * spread + 0.05, np.abs(got - want).max()
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9
    else:
        np.testing.assert_allclose(got, want, atol=1e-4)


COLLABORATIVE = {
    "cqat": CompressConfig(run_dir="-", cluster=4, qat=True),
    "sparse_cluster": CompressConfig(run_dir="-", cluster=4, **PRUNE),
    "pcqat": CompressConfig(run_dir="-", cluster=4, qat=True, **PRUNE),
}


@pytest.mark.integration
@pytest.mark.parametrize("mode", list(COLLABORATIVE))
def test_collaborative_modes_keep_zeros_and_clusters_through_every_stage(mode, tmp_path):
    # The CNN mixes layers tfmot's schemes preserve (Dense) with ones our configs preserve
    # (Conv1D, Embedding).
    cfg = COLLABORATIVE[mode]
    _, compressed, stages = _compress("cnn", cfg, tmp_path)
    assert mode_for(cfg).name == mode and [s.name for s in stages][-1] == \
        ("qat" if cfg.qat else "cluster")
    rows = _rows_by_layer(compressed, count_unique=True)
    clustered = next(s.plan for s in stages if s.name == "cluster")
    assert {"token_embedding", "conv2", "conv3", "logits"} <= set(clustered)
    for layer, n in clustered.items():
        for row in rows[layer]:
            assert row["distinct_values"] <= n, (layer, row)
            if cfg.prune:
                assert row["sparsity"] >= 0.5 - 0.02, (layer, row)
    ids, _ = _toy(8, seed=2)
    want = compressed(ids, training=False).numpy()
    got = _litert(tflite_blob(compressed, LENGTH, "int8" if cfg.qat else "float"), ids)
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.75


@pytest.mark.integration
def test_qat_of_an_already_pruned_model_keeps_its_zeros(tmp_path):
    _, pruned, _ = _compress("bow", MATRIX["prune"], tmp_path)
    steps = math.ceil(len(_toy()[0]) / BATCH)
    quantized, stages = compress_model(pruned, MATRIX["qat"], _fit_stage(tmp_path), steps, 2,
                                       sample_ids=_toy()[0])
    assert stages[0].plan["scheme"] == "prune_preserve"  # chosen because the source is sparse
    for layer, layer_rows in _rows_by_layer(quantized).items():
        for row in layer_rows:
            assert row["sparsity"] == pytest.approx(0.5, abs=0.02), (layer, row)
    no_keep = CompressConfig(run_dir="-", qat=True, keep_sparsity=False)
    _, stages = compress_model(pruned, no_keep, lambda *a: None, steps, 1)
    assert stages[0].plan["scheme"] == "default"


def test_every_combination_of_techniques_has_a_mode():
    seen = {}
    for prune in (0.0, 0.5):
        for cluster in (0, 4):
            for qat in (False, True):
                if not (prune or cluster or qat):
                    with pytest.raises(UserError, match="nothing to compress"):
                        mode_for(CompressConfig(run_dir="-"))
                    continue
                cfg = CompressConfig(run_dir="-", prune=prune, cluster=cluster, qat=qat)
                seen[mode_for(cfg).name] = [s.__name__ for s in mode_for(cfg).stages]
    assert sorted(seen) == MODES.names() == sorted(
        ["prune", "cluster", "qat", "pqat", "cqat", "sparse_cluster", "pcqat"])
    assert seen["pcqat"] == ["PruneStage", "SparseClusterStage", "SparseClusterQatStage"]


def test_layer_overrides_parse_and_bad_values_are_clear_errors():
    assert parse_layer_sparsity(["logits:0", "conv*:2:4", "block?_ffn_in:0.9"]) == [
        ("logits", 0.0), ("conv*", (2, 4)), ("block?_ffn_in", 0.9)]
    for bad, message in ((["logits"], "layer_pattern:value"), (["x:1.5"], r"\[0, 1\)"),
                         (["x:4:2"], "m:n sparsity pattern"), (["x:abc"], "neither")):
        with pytest.raises(UserError, match=message):
            parse_layer_sparsity(bad)
    with pytest.raises(UserError, match="m:n"):
        mode_for(CompressConfig(run_dir="-", structured="4:2"))


def test_follows_m_by_n_checks_groups_along_the_input_axis():
    kernel = np.ones((8, 3), np.float32)  # [C_in, C_out]
    assert not follows_m_by_n(kernel, 2, 4)
    kernel[[0, 1, 4, 5]] = 0  # two zeros in each group of four inputs, for every output
    assert follows_m_by_n(kernel, 2, 4)
    kernel[[0, 1, 2, 3], 0] = [0, 0, 0, 1]
    assert follows_m_by_n(kernel, 2, 4)
    kernel[5, 1] = 7.0
    assert not follows_m_by_n(kernel, 2, 4)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, data_dir):
    """A tiny teacher and a student distilled from it (augmented transfer set)."""
    from conftest import run_script
    from test_end_to_end import TINY, _banking_subset
    tmp = tmp_path_factory.mktemp("compress")
    data = _banking_subset(tmp / "intents.csv", bad_row=False)
    common = [f"--data={data}", "--text_column=utterance", "--label_column=intent",
              f"--data_dir={data_dir}"]
    run_script("train", *common, f"--output_dir={tmp / 'teacher'}", "--epochs=4", *TINY)
    run_script("distill", *common, f"--teacher_dir={tmp / 'teacher'}", "--student=cnn",
               "--embedding_dim=16", "--num_filters=16", "--kernel_sizes=2,3", "--hidden_dim=0",
               "--max_seq_len=24", "--vocab_size=800", "--epochs=4", "--learning_rate=5e-3",
               "--augment_copies=1", f"--output_dir={tmp / 'student'}")
    return tmp


@pytest.mark.integration
def test_compress_script_prunes_and_quantizes_while_distilling(distilled):
    import json
    import os
    from conftest import run_script
    from test_end_to_end import _tags
    from slm_tf.train.artifacts import load_run
    tmp = distilled
    out = str(tmp / "student_c")
    proc = run_script("compress", f"--run_dir={tmp / 'student'}", f"--output_dir={out}",
                      f"--teacher_dir={tmp / 'teacher'}", "--prune=0.6", "--structured=2:4",
                      "--prune_schedule=polynomial", "--qat", "--epochs=2", "--qat_epochs=1",
                      "--prune_frequency=5", "--learning_rate=2e-3")
    assert "reusing the cache" in proc.stderr  # the student's own cached teacher outputs
    assert "after (pqat)" in proc.stdout
    for name in ("model.keras", "saved_model/saved_model.pb", "tokenizer/vocab.txt",
                 "labels.json", "config.json", "metrics.json", "compression.json"):
        assert os.path.exists(os.path.join(out, name)), name
    report = json.load(open(os.path.join(out, "compression.json")))
    assert report["mode"] == "pqat" and report["stages"] == ["prune", "qat"]
    assert report["distillation"]["teacher_dir"] == str(tmp / "teacher")
    for when in ("before", "after"):
        size = report[when]["size"]
        assert 0 < size["weights_gzip_bytes"] < size["weights_bytes"]
        assert 0 < size["tflite_gzip_bytes"] < size["tflite_bytes"]
    assert report["before"]["size"]["tflite_quantization"] == "float"
    assert report["after"]["size"]["tflite_quantization"] == "int8"
    assert report["after"]["size"]["tflite_bytes"] < report["before"]["size"]["tflite_bytes"] / 2
    layers = {r["layer"]: r for r in report["layers"]}
    assert layers["conv2"]["follows_2:4"] and layers["logits"]["follows_2:4"]
    assert layers["token_embedding"]["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert report["accuracy_after"] > 0.3  # 8 intents: chance is 0.125
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["accuracy"] == pytest.approx(report["accuracy_after"])
    assert metrics["flops_per_example"] > 0 and metrics["compression"]["mode"] == "pqat"
    run = load_run(out)  # a QAT model reloads through load_run
    assert quantization.is_quantized(run.model)
    tags = _tags(os.path.join(out, "logs"))
    assert any(t.endswith("sparsity") for t in tags), sorted(tags)[:20]
    assert "epoch_kd_loss" in tags
    bad = run_script("compress", f"--run_dir={tmp / 'student'}", f"--output_dir={out}_bad",
                     "--cluster=2", check=False)
    assert bad.returncode != 0 and "--cluster must be 0 or >= 3" in bad.stderr


@pytest.mark.integration
def test_compress_script_reports_bad_input_in_one_line(tmp_path):
    from conftest import run_script
    proc = run_script("compress", f"--run_dir={tmp_path / 'missing'}", "--prune=0.5",
                      f"--output_dir={tmp_path / 'out'}", check=False)
    assert proc.returncode == 2 and "missing: no such run folder" in proc.stderr
    assert "Traceback" not in proc.stderr
