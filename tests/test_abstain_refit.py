"""Re-choosing a finished run's abstention rule (slm_tf/trust/refit.py) and the benchmark's
abstention metrics of an exported file, checked against brute force and the file's own
outputs run here through LiteRT."""
import os
import random

import numpy as np
import pytest
import tf_keras as keras

from conftest import write_csv
from tiny_run import WORDS, labelled_rows
from slm_tf.trust.abstention import METHODS
from slm_tf.trust.targets import ABSTAIN_METHODS

OTHER = ["weather", "joke", "song", "recipe", "movie", "flight", "alarm", "poem"]


def test_every_registered_score_is_a_flag_choice():
    assert set(ABSTAIN_METHODS) - {"auto", "none"} == set(METHODS.names())


def _oos_run(run_dir, data_dir):
    """An untrained bow run (last layer scaled so scores spread) over 3 intents + 'oos'."""
    from slm_tf.data.config import DataConfig
    from slm_tf.data.pipeline import prepare_data
    from slm_tf.io_utils import write_json
    from slm_tf.models import ModelConfig, build_model
    from slm_tf.tokenizers import TokenizerConfig, build_tokenizer
    from slm_tf.train import artifacts
    from slm_tf.train.trainer import ExperimentConfig, TrainConfig
    rng = random.Random(1)
    rows = labelled_rows(120) + [(" ".join(rng.choice(OTHER + WORDS[:4]) for _ in range(5)),
                                  "oos") for _ in range(60)]
    rng.shuffle(rows)
    csv = write_csv(os.path.join(os.path.dirname(run_dir), "oos.csv"), rows)
    exp = ExperimentConfig(DataConfig(data=csv, data_dir=data_dir, max_seq_len=8,
                                      validation_fraction=0.25, test_fraction=0.25),
                           TokenizerConfig(min_frequency=1),
                           ModelConfig(model="bow", embedding_dim=8, hidden_dim=8),
                           TrainConfig(output_dir=run_dir, epochs=1))
    data = prepare_data(exp.data)
    tokenizer = build_tokenizer(exp.tokenizer, [t for t, _ in rows])
    keras.utils.set_random_seed(0)
    model = build_model(exp.model, tokenizer.vocab_size, data.num_classes, 8)
    model.layers[-1].set_weights([w * 30 for w in model.layers[-1].get_weights()])
    os.makedirs(run_dir, exist_ok=True)
    tokenizer.save(os.path.join(run_dir, artifacts.TOKENIZER_DIR))
    artifacts.save_model(run_dir, model, tokenizer, 8)
    artifacts.save_labels(run_dir, data.label_names)
    write_json(os.path.join(run_dir, artifacts.CONFIG_FILE), exp.to_dict())
    write_json(os.path.join(run_dir, artifacts.METRICS_FILE), {"accuracy": 0.0})
    return data, tokenizer, model


@pytest.mark.integration  # a tiny run, a TFLite export and its benchmark (two runtime processes)
def test_refit_rule_and_the_benchmarked_file_abstain_as_brute_force_says(tmp_path, data_dir):
    from ai_edge_litert.interpreter import Interpreter
    from slm_tf.export.benchmark import benchmark_export
    from slm_tf.export.run import ExportConfig, export_run
    from slm_tf.io_utils import read_json
    from slm_tf.trust.refit import refit_abstention
    run_dir = str(tmp_path / "run")
    data, tokenizer, model = _oos_run(run_dir, data_dir)
    oos = data.label_names.index("oos")
    trust = refit_abstention(run_dir, "oos_margin", "oos_recall:0.7")
    t = trust["temperature"]
    assert trust["rule"]["method"] == "oos_margin" and t != 1.0

    def margin(split):  # the score by its definition: log p(oos) - log max in-scope p
        z = model.predict(tokenizer.encode(data.texts(split), 8), verbose=0) / t
        return z[:, oos] - np.delete(z, oos, axis=1).max(axis=1), np.asarray(data.labels(split))
    score, labels = margin("validation")
    is_oos = labels == oos
    assert 0 < is_oos.sum() < len(labels)
    # brute force: the largest observed threshold whose validation OOS recall is >= 0.7
    ok = [c for c in score if (score[is_oos] > c).mean() >= 0.7]
    assert trust["rule"]["threshold"] == pytest.approx(max(ok), abs=1e-5)
    assert read_json(os.path.join(run_dir, "config.json"))["train"]["abstain_method"] == \
        "oos_margin"

    out = str(tmp_path / "export")
    export_run(ExportConfig(run_dir=run_dir, formats=["tflite_float"], output_dir=out))
    rec = next(r for r in benchmark_export(out, latency_queries=5)
               if r["format"] == "tflite_float")
    runner = Interpreter(model_path=os.path.join(out, rec["path"])).get_signature_runner()
    ids = tokenizer.encode(data.texts("test"), 8)
    got = [runner(ids=row[None]) for row in ids]
    flags = np.concatenate([g["abstain"] for g in got]).reshape(-1) > 0.5
    logits = np.concatenate([g["logits"] for g in got])
    test_labels = np.asarray(data.labels("test"))
    test_oos = test_labels == oos
    answer = np.where(np.arange(logits.shape[1]) == oos, -np.inf, logits).argmax(axis=1)
    right = (answer == test_labels) & ~test_oos
    a = rec["abstention"]
    assert a["method"] == "oos_margin"
    assert a["oos_recall"] == pytest.approx(flags[test_oos].mean())
    assert a["in_scope_accuracy"] == pytest.approx((right & ~flags)[~test_oos].mean())
    assert a["in_scope_accuracy_without_abstention"] == pytest.approx(right[~test_oos].mean())
    keras_row = next(r for r in read_json(os.path.join(out, "benchmark.json"))
                     if r["format"] == "keras")
    test_score, _ = margin("test")
    assert keras_row["abstention"]["oos_recall"] == pytest.approx(
        (test_score[test_oos] > trust["rule"]["threshold"]).mean())


def test_report_shows_what_abstaining_costs_in_the_shipped_files(tmp_path):
    from slm_tf.io_utils import write_json
    from slm_tf.pipeline.report import shipped_abstention_lines
    a = {"method": "oos_margin", "oos_recall": 0.812, "oos_precision": 0.7, "auroc": 0.96,
         "in_scope_accuracy": 0.9101, "in_scope_accuracy_without_abstention": 0.9275,
         "accuracy_cost_points": 1.74, "fpr_at_95_in_scope_recall": 0.19}
    for stage in ("export", "teacher_export"):
        os.makedirs(tmp_path / stage)
        write_json(str(tmp_path / stage / "benchmark.json"),
                   [{"format": "keras", "abstention": a}, {"format": "tflite_int8"},
                    {"format": "tflite_float", "abstention": a}])
    lines = shipped_abstention_lines({s: str(tmp_path / s) for s in ("export", "teacher_export")})
    rows = [l for l in lines if l.startswith("| final") or l.startswith("| teacher")]
    assert [r.split(" | ")[0] for r in rows] == ["| final tflite_float", "| teacher tflite_float"]
    assert "| 0.8120 |" in rows[0] and "| 1.74 |" in rows[0]
    assert shipped_abstention_lines({}) == []
