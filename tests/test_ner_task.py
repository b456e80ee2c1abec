"""--task=ner through the real scripts: CoNLL (English, WordPiece, CRF) and span JSONL
(Chinese, characters), entity metrics in metrics.json, evaluate.py reproducing them, and the
predictions' entity F1 recomputed with seqeval."""
import json
import os
import random

import numpy as np
import pytest
from seqeval.metrics import f1_score

from conftest import run_script

pytestmark = pytest.mark.integration  # trains through scripts/train.py

NAMES = ["Ann", "Bob", "Carla", "Dmitri", "Eve", "Farid", "Gus", "Hana"]
CITIES = ["Paris", "Lima", "Oslo", "Quito", "Rome", "Seoul"]
FILLER = ["today", "again", "briefly", "yesterday", "happily"]


def _english_conll(path, n, seed):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        name = rng.choice(NAMES).split() + ([rng.choice(["Lee", "Kim"])] if rng.random() < .4 else [])
        toks = [("I", "O"), ("met", "O")] + [(w, ("B-" if i == 0 else "I-") + "PER")
                                            for i, w in enumerate(name)]
        toks += [("in", "O"), (rng.choice(CITIES), "B-LOC"), (rng.choice(FILLER), "O"), (".", "O")]
        lines += [f"{w}\t{t}" for w, t in toks] + [""]
    with open(path, "w", encoding="utf-8", newline="\r\n") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


TINY = ["--task=ner", "--embedding_dim=32", "--hidden_dim=32", "--num_layers=1",
        "--batch_size=16", "--learning_rate=1e-2", "--max_seq_len=24", "--epochs=4"]


@pytest.fixture(scope="module")
def english_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ner")
    train = _english_conll(tmp / "train.txt", 300, 0)
    test = _english_conll(tmp / "test.txt", 60, 1)
    out = str(tmp / "run")
    proc = run_script("train", f"--data={train}", f"--test_data={test}", "--model=bilstm",
                      "--crf", "--tokenizer=wordpiece", "--vocab_size=200",
                      f"--output_dir={out}", *TINY)
    return tmp, train, test, out, proc


def test_train_writes_entity_metrics(english_run):
    _, _, _, out, proc = english_run
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["task"] == "ner"
    assert m["entity_f1"] > 0.9, m
    assert set(m["per_type"]) == {"PER", "LOC"}
    assert m["per_type"]["PER"]["support"] == 60
    assert json.load(open(os.path.join(out, "labels.json"))) == [
        "O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert "test entity_f1" in proc.stdout


def test_evaluate_reproduces_and_seqeval_agrees(english_run):
    tmp, _, test, out, _ = english_run
    proc = run_script("evaluate", f"--run_dir={out}", f"--data={test}")
    report = json.load(open(os.path.join(out, "eval", "test_all.json")))
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert report["entity_f1"] == pytest.approx(m["entity_f1"])
    assert "entity F1" in proc.stdout
    # Independent check: the saved model's word tags scored by seqeval.
    import slm_tf  # noqa: F401
    from slm_tf.data.ner_readers import read_ner
    from slm_tf.ner.schemes import spans_to_tags
    from slm_tf.tasks.ner import encode_split, predict_spans
    from slm_tf.train.artifacts import load_run
    run = load_run(out)
    examples = read_ner(test).examples
    enc = encode_split(examples, run.tokenizer, run.label_names, "BIO", run.max_seq_len)
    pred, _ = predict_spans(run.model, enc, run.label_names, "BIO")
    gold_tags, pred_tags = [], []
    for ex, spans in zip(examples, pred):
        starts = [a for a, _ in ex.tokens]
        def word_spans(char_spans):
            from slm_tf.ner.schemes import Span
            return [Span(starts.index(s.start), max(i for i, (a, _) in enumerate(ex.tokens)
                                                    if a < s.end) + 1, s.type)
                    for s in char_spans]
        gold_tags.append(spans_to_tags(word_spans(ex.spans), len(ex.tokens), "BIO"))
        pred_tags.append(spans_to_tags(word_spans(spans), len(ex.tokens), "BIO"))
    assert f1_score(gold_tags, pred_tags) == pytest.approx(m["entity_f1"])


def test_chinese_span_jsonl_with_char_tokenizer(tmp_path):
    rng = random.Random(0)
    people, places = ["张三", "李四", "王小明", "赵六"], ["北京", "上海", "广州"]
    rows = []
    for _ in range(240):
        p, c = rng.choice(people), rng.choice(places)
        text = f"昨天{p}去了 {c}。"
        rows.append({"text": text, "entities": [[2, 2 + len(p), "PER"],
                                                [text.index(c), text.index(c) + len(c), "LOC"]]})
    path = tmp_path / "zh.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    out = str(tmp_path / "run")
    run_script("train", f"--data={path}", "--model=cnn", "--kernel_sizes=3",
               "--num_filters=32", "--tokenizer=char", "--vocab_size=100",
               f"--output_dir={out}", *TINY)
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["entity_f1"] > 0.9, m
    assert m["data"]["scheme"] == "BIOES"


def test_extract_prints_entities_with_exact_offsets(english_run):
    tmp, _, _, out, _ = english_run
    text = "  I met   Carla Kim in\tOslo today ."
    proc = run_script("extract", f"--run_dir={out}", f"--text={text}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["text"] == text
    assert [(e["type"], e["text"]) for e in row["entities"]] == [("PER", "Carla Kim"),
                                                                 ("LOC", "Oslo")]
    for e in row["entities"]:
        assert text[e["start"]:e["end"]] == e["text"]
    src = tmp / "in.jsonl"
    src.write_text(json.dumps({"text": "I met Eve in Rome ."}) + "\n{\"txt\": 1}\n")
    bad = run_script("extract", f"--run_dir={out}", f"--input={src}", check=False)
    assert bad.returncode == 2 and "in.jsonl:2" in bad.stderr and "Fix:" in bad.stderr
    src.write_text(json.dumps({"text": "I met Eve in Rome ."}) + "\n")
    dst = tmp / "out.jsonl"
    run_script("extract", f"--run_dir={out}", f"--input={src}", f"--output={dst}")
    got = json.loads(dst.read_text().strip())
    assert [(e["type"], e["text"]) for e in got["entities"]] == [("PER", "Eve"), ("LOC", "Rome")]
