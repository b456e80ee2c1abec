"""A Chinese character CNN-CRF tagger (hashed bigrams, dilated convolutions) from
scripts/train.py to export.py and benchmark.py: int8 calibrated on the run's own NER sentences,
the Android bundle read by a TensorFlow-free client that reproduces the Keras entities, and
entity F1 per exported file equal to the Keras model's."""
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_script

pytestmark = pytest.mark.integration  # trains, exports and benchmarks through the scripts

PEOPLE = ["张三", "李四", "王小明", "赵六", "陈静"]
PLACES = ["北京", "上海", "广州", "西安"]
ORGS = ["新华社", "人民银行", "北京大学"]


def _bmes(word, etype):
    if len(word) == 1:
        return [f"S-{etype}"]
    return [f"B-{etype}"] + [f"M-{etype}"] * (len(word) - 2) + [f"E-{etype}"]


def _msra_like(path, n, seed):
    """BMES character-per-line sentences (MSRA's layout, CRLF line ends)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        p, c, o = rng.choice(PEOPLE), rng.choice(PLACES), rng.choice(ORGS)
        parts = [("昨天", None), (p, "PER"), ("在", None), (c, "LOC"), ("见了", None),
                 (o, "ORG"), ("的人。", None)]
        for word, etype in parts:
            tags = _bmes(word, etype) if etype else ["O"] * len(word)
            lines += [f"{ch} {t}" for ch, t in zip(word, tags)]
        lines.append("")
    with open(path, "w", encoding="utf-8", newline="\r\n") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def ner_export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ner_export")
    train = _msra_like(tmp / "train.txt", 200, 0)
    test = _msra_like(tmp / "test.txt", 40, 1)
    run = str(tmp / "run")
    run_script("train", "--task=ner", f"--data={train}", f"--test_data={test}", "--model=cnn",
               "--kernel_sizes=3", "--num_filters=32", "--dilations=1,2",
               "--bigram_buckets=64", "--hidden_dim=0", "--crf", "--tokenizer=char",
               "--embedding_dim=16", "--batch_size=16", "--learning_rate=1e-2",
               "--max_seq_len=24", "--epochs=8", "--nobaseline", f"--output_dir={run}")
    out = str(tmp / "export")
    run_script("export", f"--run_dir={run}", "--formats=tflite_int8,tflite_float",
               f"--output_dir={out}")
    return tmp, run, out


def test_bundle_client_reproduces_keras_entities(ner_export):
    tmp, run, out = ner_export
    spec = json.load(open(os.path.join(out, "android", "bundle.json"), encoding="utf-8"))
    assert spec["task"] == "ner" and spec["scheme"] == "BMES" and spec["crf_file"] == "crf.json"
    assert spec["io"]["outputs"]["logits"]["shape"] == [1, 24, 13]
    # Spaces, a character outside the vocabulary and a sentence longer than max_seq_len.
    texts = ["昨天王小明在上海见了人民银行的人。", "昨天 赵六  在西安见了新华社的人。",
             "昨天张三在北京见了北京大学的人。昨天李四在广州见了新华社的人。", "犇"]
    (tmp / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    client_out = tmp / "client.json"
    subprocess.run([sys.executable, os.path.join(REPO, "tests", "ner_client.py"),
                    os.path.join(out, "android"), str(tmp / "texts.json"), str(client_out)],
                   check=True, cwd=str(tmp), env={**os.environ, "PYTHONPATH": ""})
    client = json.loads(client_out.read_text(encoding="utf-8"))
    assert client["tensorflow_loaded"] is False
    import slm_tf  # noqa: F401  (in-process: TensorFlow is loaded once for the module)
    from slm_tf.ner.extract import extract_entities
    from slm_tf.train.artifacts import load_run
    keras = extract_entities(load_run(run), texts)  # what scripts/extract.py prints
    assert client["entities"] == keras
    assert sum(len(e) for e in keras) >= 6  # entities to compare, not empty lists


def test_benchmark_scores_entities_per_file(ner_export):
    _, _, out = ner_export
    run_script("benchmark", f"--export_dir={out}", "--latency_queries=20")
    records = {r["format"]: r for r in json.load(open(os.path.join(out, "benchmark.json")))}
    assert set(records) == {"keras", "tflite_int8", "tflite_float"}
    assert records["keras"]["entity_f1"] > 0.9
    assert records["tflite_float"]["entity_f1"] == records["keras"]["entity_f1"]
    assert abs(records["tflite_int8"]["f1_delta_vs_keras"]) <= 0.005
    assert records["tflite_float"]["agreement"] == 1.0
    assert records["tflite_int8"]["p50_ms_1t"] > 0
    assert "| tflite_int8 |" in open(os.path.join(out, "benchmark.md")).read()


def test_int8_calibration_reads_ner_sentences(ner_export):
    """The calibration rows are the training sentences' ids as training encoded them (the
    classification reader cannot even read this CoNLL file)."""
    import slm_tf  # noqa: F401
    from slm_tf.tasks import get_task
    from slm_tf.train.artifacts import load_run
    _, run_dir, _ = ner_export
    run = load_run(run_dir)
    rows = get_task("ner").calibration_inputs(run, 10)
    assert rows.shape == (10, 24) and rows.dtype == np.int32
    vocab = run.tokenizer.token_to_id
    # Every synthetic sentence starts with 昨天 after [CLS], and ends with [SEP] then padding.
    assert (rows[:, 0] == run.tokenizer.cls_id).all()
    assert (rows[:, 1] == vocab["昨"]).all() and (rows[:, 2] == vocab["天"]).all()
    lengths = (rows != 0).sum(1)
    assert (rows[np.arange(10), lengths - 1] == run.tokenizer.sep_id).all()


def test_distill_ner_student_learns_teacher_tags(ner_export):
    """distill.py on a NER teacher: the student inherits the teacher's data, tokenizer and
    length, learns per-position tag distributions and keeps the teacher's CRF scores."""
    tmp, run, _ = ner_export
    student = str(tmp / "student")
    run_script("distill", f"--teacher_dir={run}", "--model=cnn", "--kernel_sizes=3",
               "--num_filters=16", "--hidden_dim=0", "--crf", "--embedding_dim=16",
               "--batch_size=16", "--learning_rate=1e-2", "--epochs=4",
               f"--data_dir={tmp / 'dd'}", f"--output_dir={student}")
    m = json.load(open(os.path.join(student, "metrics.json")))
    t = json.load(open(os.path.join(run, "metrics.json")))
    assert m["task"] == "ner" and m["teacher_entity_f1"] == pytest.approx(t["entity_f1"])
    assert m["num_params"] < m["teacher_num_params"] / 2
    assert m["entity_f1"] > 0.8, m["entity_f1"]
    assert json.load(open(os.path.join(student, "config.json")))["data"]["max_seq_len"] == 24
    import slm_tf  # noqa: F401
    from slm_tf.train.artifacts import load_run
    for a, b in zip(load_run(student).model.crf.params(), load_run(run).model.crf.params()):
        np.testing.assert_array_equal(a, b)
