"""Readers: every format, and every kind of bad input named by file and line."""
import json
import os

import pytest

from conftest import write_csv
from slm_tf.data.config import DataConfig
from slm_tf.data.readers import DataError, read_corpus, read_labelled
from slm_tf.data.sources import load_splits


def test_csv_tsv_jsonl_folder_read_the_same_rows(tmp_path):
    rows = [("hello there", "a"), ("good, bye", "b"), ("多行\n文本", "c")]
    csv_path = write_csv(tmp_path / "d.csv", rows)
    with open(tmp_path / "d.tsv", "w", encoding="utf-8") as f:
        f.write("label\ttext\n" + "".join(f"{l}\t{t.replace(chr(10), ' ')}\n" for t, l in rows))
    with open(tmp_path / "d.jsonl", "w", encoding="utf-8") as f:
        f.write("".join(json.dumps({"text": t, "label": l}, ensure_ascii=False) + "\n"
                        for t, l in rows))
    for t, l in rows:
        os.makedirs(tmp_path / "folder" / l, exist_ok=True)
        (tmp_path / "folder" / l / "x.txt").write_text(t, encoding="utf-8")
    want = [(t, l) for t, l in rows]
    assert [(e.text, e.label) for e in read_labelled(csv_path).examples] == want
    assert [(e.text, e.label) for e in read_labelled(str(tmp_path / "d.jsonl")).examples] == want
    assert [(e.text, e.label) for e in read_labelled(str(tmp_path / "folder")).examples] == want
    tsv = read_labelled(str(tmp_path / "d.tsv")).examples
    assert [e.label for e in tsv] == ["a", "b", "c"] and tsv[2].text == "多行 文本"


def test_multiline_csv_rows_report_their_own_line(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('text,label\n"two\nlines",a\n,b\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"m\.csv:4: the 'text' value is empty"):
        read_labelled(str(path))


@pytest.mark.parametrize("content,match", [
    ("words,label\nhi,a\n", r"x\.csv:1: the header has no column 'text'.*--text_column"),
    ("text,label\nhi,a\n,b\n", r"x\.csv:3: the 'text' value is empty"),
    ("text,label\nhi,a\nhi,a,extra\n", r"x\.csv:3: the row has 3 fields but the header has 2"),
    ("text,label\nhi,\n", r"x\.csv:2: the 'label' value is empty"),
])
def test_bad_rows_name_file_line_and_fix(tmp_path, content, match):
    path = tmp_path / "x.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=match) as e:
        read_labelled(str(path))
    assert "Fix:" in str(e.value)


def test_undecodable_bytes_error_and_skip(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"text,label\nok one,a\nbad \xff\xfe bytes,b\nok two,b\n")
    with pytest.raises(DataError, match=r"x\.csv:3: bytes .* are not UTF-8"):
        read_labelled(str(path))
    report = read_labelled(str(path), on_bad_row="skip")
    assert [e.text for e in report.examples] == ["ok one", "ok two"]
    assert report.skipped == {"undecodable_bytes": 1}


def test_skip_counts_every_reason(tmp_path):
    path = write_csv(tmp_path / "x.csv", [("fine", "a"), ("", "a"), ("also fine", "b")])
    with open(path, "a", encoding="utf-8") as f:
        f.write("ragged,row,here\n")
    report = read_labelled(path, on_bad_row="skip")
    assert len(report.examples) == 2
    assert report.skipped == {"empty_text": 1, "ragged_row": 1}


def test_jsonl_errors(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "a", "label": "x"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"x\.jsonl:2: not valid JSON"):
        read_labelled(str(path))
    path.write_text('{"text": "a", "label": "x"}\n{"body": "b", "label": "y"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"x\.jsonl:2: the object has no key 'text'"):
        read_labelled(str(path))


def test_one_class_and_unseen_test_label(tmp_path):
    one = write_csv(tmp_path / "one.csv", [(f"text {i}", "only") for i in range(10)])
    with pytest.raises(DataError, match=r"one\.csv: the training data has only one class"):
        load_splits(DataConfig(data=one))
    train = write_csv(tmp_path / "train.csv", [(f"t {i}", "ab"[i % 2]) for i in range(20)])
    test = write_csv(tmp_path / "test.csv", [("q", "a"), ("r", "zebra")])
    with pytest.raises(DataError, match=r"test\.csv:3: label 'zebra' in the test split never "
                       r"occurs in the training split"):
        load_splits(DataConfig(data=train, test_data=test))
    splits = load_splits(DataConfig(data=train, test_data=test, on_bad_row="skip"))
    assert len(splits.test) == 1 and splits.skipped == {"label_unseen_in_train": 1}


def test_missing_file_and_unknown_name():
    with pytest.raises(DataError, match="not a file, folder or registered dataset"):
        load_splits(DataConfig(data="no_such_thing.csv"))


def test_corpus_lines_and_paragraphs(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("first line\nsecond line\n\nthird\n", encoding="utf-8")
    assert [d.text for d in read_corpus(str(path), "line").examples] == \
        ["first line", "second line", "third"]
    docs = read_corpus(str(path), "paragraph").examples
    assert [d.text for d in docs] == ["first line second line", "third"]
    assert docs[1].source.endswith("c.txt:4")
