"""Registered datasets, stratified splits and the tfds builder."""
import collections
import os

import pytest

from slm_tf.data.config import DataConfig
from slm_tf.data.pipeline import make_dataset, prepare_data
from slm_tf.data.readers import DataError, Example
from slm_tf.data.sources import fingerprint, load_splits, stratified_split
from slm_tf.tokenizers import CharTokenizer


def test_stratified_split_is_deterministic_disjoint_and_proportional():
    exs = [Example(f"t{i}", "abc"[i % 3] if i < 90 else "d", f"f:{i}") for i in range(100)]
    kept, held = stratified_split(exs, 0.2, seed=7)
    kept2, held2 = stratified_split(exs, 0.2, seed=7)
    assert [e.source for e in held] == [e.source for e in held2]
    assert not {e.source for e in kept} & {e.source for e in held}
    assert len(kept) + len(held) == 100
    counts = collections.Counter(e.label for e in held)
    assert counts == {"a": 6, "b": 6, "c": 6, "d": 2}
    assert [e.source for e in stratified_split(exs, 0.2, seed=8)[1]] != [e.source for e in held]


def test_banking77_embedded():
    s = load_splits(DataConfig(data="banking77"))
    assert len(s.label_names) == 77
    assert s.sizes() == {"train": 9000, "validation": 1003, "test": 3080}
    assert s.license == "CC BY 4.0"


def test_clinc150_and_medical_abstracts(shared_data):
    c = load_splits(DataConfig(data="clinc150", data_root=shared_data))
    assert len(c.label_names) == 150 and c.sizes() == {"train": 15000, "validation": 3000,
                                                       "test": 4500}
    # clinc150_oos adds the paper's 100/100/1000 out-of-scope queries as the label "oos".
    o = load_splits(DataConfig(data="clinc150_oos", data_root=shared_data))
    assert len(o.label_names) == 151 and o.sizes() == {"train": 15100, "validation": 3100,
                                                       "test": 5500}
    assert [sum(e.label == "oos" for e in o.split(s)) for s in ("train", "validation", "test")
            ] == [100, 100, 1000]
    h = load_splits(DataConfig(data="clinc150_oos", data_root=shared_data,
                               oos_validation_share=0.5))
    assert [sum(e.label == "oos" for e in h.split(s)) for s in ("train", "validation", "test")
            ] == [50, 150, 1000]
    m = load_splits(DataConfig(data="medical_abstracts", data_root=shared_data))
    assert len(m.label_names) == 5 and sum(m.sizes().values()) == 2888
    assert min(m.sizes().values()) > 250
    with pytest.raises(DataError, match="--data_root"):
        load_splits(DataConfig(data="clinc150"))


def test_tfds_prepares_once_with_metadata(tmp_path):
    cfg = DataConfig(data="banking77", data_dir=str(tmp_path), batch_size=16, max_seq_len=12)
    data = prepare_data(cfg)
    info = data.builder.info
    assert info.features["label"].names[:2] == ["card_arrival", "card_linking"]
    assert info.splits["test"].num_examples == 3080
    records = [p for p in os.listdir(data.summary()["tfds_dir"]) if ".tfrecord" in p]
    assert records
    stamp = os.path.getmtime(os.path.join(data.summary()["tfds_dir"], "dataset_info.json"))
    again = prepare_data(cfg)
    assert os.path.getmtime(os.path.join(again.summary()["tfds_dir"], "dataset_info.json")) \
        == stamp
    tok = CharTokenizer.learn(data.texts("train")[:500], 100)
    ids, y = next(iter(make_dataset(data, "test", tok, cfg, training=False)))
    assert ids.shape == (16, 12) and ids.dtype.name == "int32"
    assert list(y.numpy()[:3]) == data.labels("test")[:3]
    assert (ids.numpy()[:, 0] == tok.cls_id).all()


def test_training_batches_shuffle_by_seed(tmp_path):
    cfg = DataConfig(data="banking77", data_dir=str(tmp_path), batch_size=8, max_seq_len=8)
    data = prepare_data(cfg)
    tok = CharTokenizer.learn(data.texts("train")[:200], 60)
    first = lambda seed: next(iter(make_dataset(data, "train", tok, cfg, True, seed)))[1].numpy()
    assert (first(1) == first(1)).all()
    assert not (first(1) == first(2)).all()


def test_raw_corpus_builder(tmp_path, shared_data):
    import csv as _csv
    from slm_tf.data.pipeline import prepare_corpus
    path = tmp_path / "abstracts.txt"
    with open(os.path.join(shared_data, "medical_abstracts", "medical_tc_test.csv"),
              encoding="utf-8") as f:
        texts = [r["medical_abstract"] for r in _csv.DictReader(f)][:200]
    path.write_text("\n\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
    builder = prepare_corpus(str(path), str(tmp_path / "tfds"), unit="paragraph",
                             validation_fraction=0.1)
    assert builder.info.splits["train"].num_examples == 180
    assert builder.info.splits["validation"].num_examples == 20
    docs = {r["source"].numpy().decode().rsplit(":", 1)[1]: r["text"].numpy().decode()
            for split in ("train", "validation") for r in builder.as_dataset(split=split)}
    assert len(docs) == 200
    assert docs["1"] == texts[0].replace("\n", " ").strip()
    assert docs["3"] == texts[1].replace("\n", " ").strip()


def test_length_bucketing_pads_each_batch_to_its_longest(tmp_path):
    cfg = DataConfig(data="banking77", data_dir=str(tmp_path), batch_size=16, max_seq_len=64,
                     bucket_by_length=True)
    data = prepare_data(cfg)
    tok = CharTokenizer.learn(data.texts("train")[:500], 100)
    widths = set()
    for ids, _ in make_dataset(data, "train", tok, cfg, training=True, seed=0).take(40):
        ids = ids.numpy()
        widths.add(ids.shape[1])
        assert ids.shape[1] <= 64 and (ids[:, -1] != 0).any()  # no all-padding column
    assert len(widths) > 2


def test_token_dropout_replaces_only_real_tokens(tmp_path):
    cfg = DataConfig(data="banking77", data_dir=str(tmp_path), batch_size=256, max_seq_len=32,
                     token_dropout=0.3)
    data = prepare_data(cfg)
    tok = CharTokenizer.learn(data.texts("train")[:500], 100)
    plain = DataConfig(**{**cfg.__dict__, "token_dropout": 0.0})
    a, _ = next(iter(make_dataset(data, "train", tok, plain, True, seed=0)))
    b, _ = next(iter(make_dataset(data, "train", tok, cfg, True, seed=0)))
    a, b = a.numpy(), b.numpy()
    changed = a != b
    assert (b[changed] == tok.unk_id).all()
    assert not changed[:, 0].any() and not changed[a == 0].any() and not changed[a == tok.sep_id].any()
    real = (a > 0) & (a != tok.cls_id) & (a != tok.sep_id) & (a != tok.unk_id)
    assert 0.25 < changed[real].mean() < 0.35


def test_oos_validation_share_moves_that_many_oos_training_rows_into_validation(tmp_path):
    train, val = tmp_path / "train.csv", tmp_path / "val.csv"
    # 10 out-of-scope rows among 16; a separate validation file with one of each label.
    train.write_text("text,label\n" + "".join(f"in{i},a\n" for i in range(6))
                     + "".join(f"out{i},oos\n" for i in range(10)))
    val.write_text("text,label\nv1,a\nv2,oos\n")
    cfg = dict(data=str(train), validation_data=str(val), test_fraction=0.0)
    plain = load_splits(DataConfig(**cfg))
    s = load_splits(DataConfig(**cfg, oos_validation_share=0.3))
    moved = [e.text for e in s.validation[2:]]
    assert [e.text for e in s.validation[:2]] == ["v1", "v2"] and len(moved) == 3
    assert all(t.startswith("out") for t in moved)
    assert sorted(e.text for e in s.train + s.validation[2:]) == sorted(
        e.text for e in plain.train)
    assert sum(e.label == "oos" for e in s.train) == 7
    again = load_splits(DataConfig(**cfg, oos_validation_share=0.3))
    assert [e.text for e in again.validation] == [e.text for e in s.validation]
    # Another cached preparation: the option is part of the data fingerprint.
    assert fingerprint(DataConfig(**cfg, oos_validation_share=0.3), plain.files) != fingerprint(
        DataConfig(**cfg), plain.files)
    with pytest.raises(DataError, match="oos_validation_share"):
        load_splits(DataConfig(data="banking77", oos_validation_share=0.5))


_PREPARE_CHILD = """
import os, sys, time
from slm_tf.data.config import DataConfig
from slm_tf.data.pipeline import prepare_data
csv_path, data_dir, go, me = sys.argv[1:]
open(me, "w").close()
while not os.path.exists(go):  # both processes start preparing at the same moment
    time.sleep(0.01)
data = prepare_data(DataConfig(data=csv_path, data_dir=data_dir))
print(sum(1 for _ in data.builder.as_dataset(split="train")), data.splits.sizes()["train"])
"""


@pytest.mark.integration
def test_two_processes_preparing_one_dataset_at_once_both_succeed(tmp_path):
    """tfds renames its temporary folder at the end of a build; without a lock the second of
    two concurrent builds of one dataset dies with FileExistsError (seen with two benchmarks
    started together on a fresh data_dir)."""
    import subprocess
    import sys
    import time

    from conftest import write_csv
    from tiny_run import labelled_rows
    data = write_csv(tmp_path / "d.csv", labelled_rows(60000))  # a build of a few seconds
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", _PREPARE_CHILD, data, str(tmp_path / "tfds"),
                               str(go), str(r)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for r in ready]
    deadline = time.time() + 120
    while not all(r.exists() for r in ready) and time.time() < deadline:
        time.sleep(0.05)
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        read, expected = map(int, out.strip().splitlines()[-1].split())
        assert read == expected > 40000  # every training row readable in both processes
