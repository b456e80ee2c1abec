"""End to end through the real scripts: bad rows, skip, artifacts, evaluate, TensorBoard,
SavedModel text signature, seeds, CJK text, SIGKILL and resume."""
import csv
import glob
import json
import os
import random

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_script, run_script_killed_at, write_csv
from slm_tf.data.sources import EMBEDDED_DIR

pytestmark = pytest.mark.integration  # runs the real scripts end to end

TINY = ["--model=cnn", "--embedding_dim=32", "--num_filters=32", "--kernel_sizes=2,3",
        "--hidden_dim=0", "--max_seq_len=24", "--vocab_size=800", "--batch_size=32",
        "--learning_rate=5e-3"]


def _banking_subset(path, n_labels=8, per_label=60, bad_row=True):
    rows = []
    with open(os.path.join(EMBEDDED_DIR, "banking77", "train.csv"), encoding="utf-8") as f:
        by_label = {}
        for r in csv.DictReader(f):
            by_label.setdefault(r["category"], []).append(r["text"])
    for label in sorted(by_label)[:n_labels]:
        rows += [(t, label) for t in by_label[label][:per_label]]
    random.Random(0).shuffle(rows)
    if bad_row:
        rows.insert(37, ("", rows[0][1]))  # empty text on file line 39
    return write_csv(path, rows, header=("utterance", "intent"))


def _tags(log_dir):
    tags = set()
    for file in glob.glob(os.path.join(log_dir, "**", "events.out.tfevents*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(file):
            for v in event.summary.value:
                tags.add(v.tag)
    return tags


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("e2e")
    data = _banking_subset(tmp / "intents.csv")
    out = str(tmp / "run")
    args = [f"--data={data}", "--text_column=utterance", "--label_column=intent",
            f"--data_dir={data_dir}", f"--output_dir={out}", "--epochs=3", *TINY]
    return tmp, data, out, args


def test_bad_row_is_an_error_naming_file_and_line(trained):
    _, data, _, args = trained
    proc = run_script("train", *args, check=False)
    assert proc.returncode == 2
    assert f"{data}:39: the 'utterance' value is empty" in proc.stderr
    assert "--on_bad_row=skip" in proc.stderr and "Traceback" not in proc.stderr


def test_train_with_skip_writes_a_complete_run(trained):
    tmp, data, out, args = trained
    proc = run_script("train", *args, "--on_bad_row=skip")
    assert "test accuracy" in proc.stdout and out in proc.stdout
    for name in ("model.keras", "saved_model/saved_model.pb", "tokenizer/vocab.txt",
                 "tokenizer/tokenizer.json", "labels.json", "config.json", "metrics.json"):
        assert os.path.exists(os.path.join(out, name)), name
    assert not glob.glob(os.path.join(out, ".*tmp*"))  # no half-written artifacts left
    m = json.load(open(os.path.join(out, "metrics.json")))
    for key in ("accuracy", "macro_f1", "num_params", "train_examples_per_s",
                "flops_per_example", "per_class", "confusion_matrix"):
        assert key in m, key
    assert m["data"]["skipped_rows"] == {"empty_text": 1}
    assert m["accuracy"] > 0.5  # 8 intents: chance is 0.125
    assert len(m["per_class"]) == 8 and np.array(m["confusion_matrix"]).sum() == \
        m["num_examples"]
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["data"]["on_bad_row"] == "skip" and cfg["model"]["num_filters"] == 32
    assert cfg["train"]["epochs"] == 3 and "strategy" in cfg["train"]
    tags = _tags(os.path.join(out, "logs"))
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_learning_rate", "test/confusion_matrix",
                "test/worst_misclassified", "test/accuracy", "_hparams_/session_start_info"):
        assert tag in tags, (tag, sorted(tags))


def test_evaluate_reproduces_the_test_metrics(trained):
    _, data, out, args = trained
    proc = run_script("evaluate", f"--run_dir={out}", f"--data={data}", "--text_column=utterance",
                      "--label_column=intent", args[3], "--on_bad_row=skip")
    report = json.load(open(os.path.join(out, "eval", "intents_test.json")))
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert report["accuracy"] == pytest.approx(m["accuracy"])
    assert "accuracy" in proc.stdout


def test_saved_model_text_signature_matches_keras(trained):
    _, _, out, _ = trained
    from slm_tf.train.artifacts import load_run
    run = load_run(out)
    texts = ["I still have not received my new card", "what is the exchange rate", "我的卡"]
    keras_logits = run.model(run.tokenizer.encode(texts, run.max_seq_len)).numpy()
    # The SavedModel serves calibrated logits: the Keras ones over the temperature the run
    # fitted on validation (recorded in metrics.json).
    temperature = json.load(open(os.path.join(out, "metrics.json")))["trust"]["temperature"]
    assert temperature > 0
    loaded = tf.saved_model.load(os.path.join(out, "saved_model"))
    text_out = loaded.signatures["serve_text"](text=tf.constant(texts))
    np.testing.assert_allclose(text_out["logits"].numpy(), keras_logits / temperature,
                               rtol=1e-5, atol=1e-5)
    ids_out = loaded.signatures["serving_default"](
        ids=tf.constant(run.tokenizer.encode(texts, run.max_seq_len)))
    np.testing.assert_allclose(ids_out["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)


def test_same_seed_same_metrics(trained, tmp_path):
    _, data, _, args = trained
    accs = []
    for i in range(2):
        out = str(tmp_path / f"r{i}")
        a = [x if not x.startswith("--output_dir") else f"--output_dir={out}" for x in args]
        run_script("train", *a, "--on_bad_row=skip", "--epochs=1", "--seed=7")
        accs.append(json.load(open(os.path.join(out, "metrics.json")))["accuracy"])
    assert accs[0] == accs[1]


def _chinese_rows(n=240, seed=0):
    rng = random.Random(seed)
    who = ["我", "我们", "请问我", "麻烦帮我", "您好，我"]
    intents = {
        "查询余额": ["想查一下账户余额", "怎么看卡里还有多少钱", "查询储蓄卡的余额", "账户里剩多少钱"],
        "挂失": ["的银行卡丢了要挂失", "信用卡被偷了怎么办", "需要冻结丢失的卡", "钱包和卡都不见了"],
        "转账": ["要给朋友转账", "转账为什么还没到", "怎么把钱转到别的银行", "跨行汇款要多久"],
    }
    rows = []
    for i in range(n):
        label = list(intents)[i % 3]
        rows.append((rng.choice(who) + rng.choice(intents[label]) + rng.choice(["", "？", "。"]),
                     label))
    return rows


def test_chinese_csv_with_char_tokenizer_and_three_labels(tmp_path, data_dir):
    data = write_csv(tmp_path / "zh.csv", _chinese_rows())
    out = str(tmp_path / "zh")
    run_script("train", f"--data={data}", f"--data_dir={data_dir}", f"--output_dir={out}",
               "--tokenizer=char", "--epochs=4", *[a for a in TINY if "vocab" not in a],
               "--vocab_size=300")
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert sorted(m["per_class"]) == ["挂失", "查询余额", "转账"]
    assert m["accuracy"] >= 0.8
    vocab = open(os.path.join(out, "tokenizer", "vocab.txt"), encoding="utf-8").read().split()
    assert "卡" in vocab


def test_sigkill_mid_training_then_resume(tmp_path, data_dir):
    data = _banking_subset(tmp_path / "intents.csv", n_labels=20, per_label=80, bad_row=False)
    out = str(tmp_path / "run")
    args = [f"--data={data}", "--text_column=utterance", "--label_column=intent",
            f"--data_dir={data_dir}", f"--output_dir={out}", "--epochs=6",
            "--checkpoint_every_steps=10", "--early_stopping_patience=0", *TINY]
    # Killed at batch 15 of epoch 3 (index 2): step checkpoints every 10 batches put the last
    # one inside that epoch, after the batch counter crossed a multiple of 10 within it.
    run_script_killed_at("train", "slm_tf.train.trainer", 2, 15, *args)
    assert os.listdir(os.path.join(out, "checkpoints", "backup"))
    assert not os.path.exists(os.path.join(out, "metrics.json"))
    run_script("train", *args)
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["resumed_at_epoch"] == 2
    assert m["epochs_run"] == 6 - 2
    from slm_tf.train.artifacts import load_run
    run = load_run(out)
    assert run.model.predict(run.tokenizer.encode(["card arrived?"], 24), verbose=0).shape == \
        (1, 20)


@pytest.mark.parametrize("strategy", ["mirrored", "multi_worker"])
def test_distribution_strategies_train(trained, tmp_path, strategy):
    _, _, _, args = trained
    out = str(tmp_path / strategy)
    a = [x if not x.startswith("--output_dir") else f"--output_dir={out}" for x in args]
    run_script("train", *a, "--on_bad_row=skip", "--epochs=1", f"--strategy={strategy}")
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert json.load(open(os.path.join(out, "config.json")))["train"]["strategy"] == strategy
    assert m["accuracy"] > 0.3
