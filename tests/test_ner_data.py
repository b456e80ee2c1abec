"""NER data: scheme detection and conversion, CoNLL / span-JSONL readers, offsets."""
import json
import os
import random

import pytest

import slm_tf  # noqa: F401
from slm_tf.data.ner_readers import NerExample, read_ner
from slm_tf.data.readers import DataError
from slm_tf.ner import offsets, schemes
from slm_tf.ner.schemes import Span
from slm_tf.tokenizers.char import CharTokenizer
from slm_tf.tokenizers.wordpiece import WordPieceTokenizer

SHARED = os.environ.get("SLM_TF_SHARED_DATA", "/work/shared/data")


def _write(tmp_path, name, text, newline="\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return str(path)


# --- schemes ------------------------------------------------------------------------------
def test_hand_tagged_sentence_in_each_scheme():
    spans = [Span(0, 2, "PER"), Span(3, 4, "LOC"), Span(5, 8, "ORG")]
    assert schemes.spans_to_tags(spans, 8, "BIO") == [
        "B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "I-ORG", "I-ORG"]
    assert schemes.spans_to_tags(spans, 8, "BIOES") == [
        "B-PER", "E-PER", "O", "S-LOC", "O", "B-ORG", "I-ORG", "E-ORG"]
    assert schemes.spans_to_tags(spans, 8, "BMES") == [
        "B-PER", "E-PER", "O", "S-LOC", "O", "B-ORG", "M-ORG", "E-ORG"]


def _random_spans(rng, n):
    spans, i = [], 0
    while i < n:
        if rng.random() < 0.3:
            length = rng.randint(1, 4)
            if i + length <= n:
                spans.append(Span(i, i + length, rng.choice(["PER", "LOC", "ORG"])))
                i += length
                continue
        i += 1
    return spans


@pytest.mark.parametrize("source", ["BIO", "BIOES", "BMES"])
@pytest.mark.parametrize("target", ["BIO", "BIOES", "BMES"])
def test_conversion_round_trips(source, target):
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 12)
        spans = _random_spans(rng, n)
        tags = schemes.spans_to_tags(spans, n, source)
        assert schemes.first_violation(tags, source) is None
        assert schemes.tags_to_spans(tags, source) == spans
        there = schemes.convert(tags, source, target)
        assert schemes.first_violation(there, target) is None
        assert schemes.convert(there, target, source) == tags


def test_detect_scheme():
    assert schemes.detect_scheme(["O", "B-PER", "I-PER"]) == "BIO"
    assert schemes.detect_scheme(["O", "B-PER", "I-PER", "E-PER", "S-LOC"]) == "BIOES"
    assert schemes.detect_scheme(["O", "B-PER", "M-PER", "E-PER"]) == "BMES"
    with pytest.raises(ValueError):
        schemes.detect_scheme(["B-PER", "I-PER", "M-PER"])


@pytest.mark.parametrize("tags,scheme,index", [
    (["O", "I-PER"], "BIO", 1), (["B-PER", "I-LOC"], "BIO", 1),
    (["B-PER", "O"], "BIOES", 1), (["B-PER"], "BIOES", 0), (["O", "E-LOC"], "BMES", 1),
    (["B-LOC", "M-LOC", "S-LOC"], "BMES", 2)])
def test_invalid_sequences_found(tags, scheme, index):
    assert schemes.first_violation(tags, scheme)[0] == index


def test_lenient_decoding_of_broken_sequences():
    # conlleval's reading: a stray I- starts an entity, an unclosed B- ends where tags stop.
    assert schemes.tags_to_spans(["O", "I-PER", "I-PER", "B-LOC"], "BIO") == [
        Span(1, 3, "PER"), Span(3, 4, "LOC")]
    assert schemes.tags_to_spans(["B-ORG", "M-ORG", "O", "E-PER"], "BMES") == [
        Span(0, 2, "ORG"), Span(3, 4, "PER")]


# --- readers ------------------------------------------------------------------------------
def test_conll_bio_tab_and_crlf(tmp_path):
    path = _write(tmp_path, "a.txt", "Ann\tB-PER\nLee\tI-PER\nmet\tO\nBob\tB-PER\n\t\n"
                  "in\tO\nNew\tB-LOC\nYork\tI-LOC\n\n", newline="\r\n")
    report = read_ner(path)
    assert report.scheme == "BIO"
    first, second = report.examples
    assert first.text == "Ann Lee met Bob"
    assert first.entities() == [(0, 7, "PER", "Ann Lee"), (12, 15, "PER", "Bob")]
    assert first.source == f"{path}:1"
    assert second.entities() == [(3, 11, "LOC", "New York")]
    assert second.tokens == [(0, 2), (3, 6), (7, 11)]


def test_conll_bmes_chinese_space_separated(tmp_path):
    path = _write(tmp_path, "c.txt", "张 B-PER\n三 E-PER\n在 O\n北 B-LOC\n京 E-LOC\n。 O\n\n"
                  "中 B-ORG\n国 M-ORG\n队 E-ORG\n", newline="\r\n")
    report = read_ner(path)
    assert report.scheme == "BMES"
    assert report.examples[0].text == "张三在北京。"
    assert report.examples[0].entities() == [(0, 2, "PER", "张三"), (3, 5, "LOC", "北京")]
    assert report.examples[1].entities() == [(0, 3, "ORG", "中国队")]


@pytest.mark.parametrize("body,line,reason,words", [
    ("Ann\tO\nLee\tI-PER\n", 2, "invalid_tag_sequence", "'I-PER' cannot follow 'O'"),
    ("Ann\tO\nLee\tX-PER\n", 2, "unknown_tag", "'X-PER'"),
    ("Ann\tO\n\nLee\n", 3, "missing_tag", "has no tag"),
    ("Ann O\n  O\n", 2, "missing_tag", "has no tag"),
])
def test_conll_errors_name_file_line_and_fix(tmp_path, body, line, reason, words):
    path = _write(tmp_path, "bad.txt", "x\tO\n\n" + body)
    with pytest.raises(DataError) as e:
        read_ner(path)
    msg = str(e.value)
    assert f"{path}:{line + 2}:" in msg and words in msg and "Fix:" in msg
    report = read_ner(path, on_bad_row="skip")
    assert report.skipped[reason if reason != "invalid_tag_sequence"
                          else "repaired_tag_sequence"] == 1


def test_conll_repair_keeps_sentence_with_lenient_entities(tmp_path):
    path = _write(tmp_path, "r.txt", "Ann\tO\nLee\tI-PER\nKim\tI-PER\n")
    report = read_ner(path, on_bad_row="skip")
    assert report.examples[0].entities() == [(4, 11, "PER", "Lee Kim")]


def test_conll_known_types(tmp_path):
    path = _write(tmp_path, "k.txt", "Ann\tB-PER\n\nParis\tB-LOC\n")
    with pytest.raises(DataError, match=r"k.txt:3: .*'B-LOC'"):
        read_ner(path, known_types=["PER"])
    assert len(read_ner(path, known_types=["PER"], on_bad_row="skip").examples) == 1


def test_span_jsonl(tmp_path):
    rows = [{"text": "Ann met  Bob\tin Paris", "entities": [[0, 3, "PER"],
                                                          {"start": 9, "end": 12, "label": "PER"},
                                                          [16, 21, "LOC"]]},
            {"text": "", "entities": []},
            {"text": "abc", "entities": [[1, 9, "PER"]]},
            {"text": "abcdef", "entities": [[0, 3, "PER"], [2, 5, "LOC"]]},
            {"text": "abc", "entities": [[0, 1]]}]
    path = _write(tmp_path, "s.jsonl", "\n".join(json.dumps(r, ensure_ascii=False)
                                                   for r in rows) + "\n")
    for line, words in ((2, "the text is empty"), ):
        with pytest.raises(DataError, match=f"s.jsonl:{line}: {words}"):
            read_ner(path)
    report = read_ner(path, on_bad_row="skip")
    assert report.examples[0].entities() == [(0, 3, "PER", "Ann"), (9, 12, "PER", "Bob"),
                                             (16, 21, "LOC", "Paris")]
    assert dict(report.skipped) == {"empty_sentence": 1, "span_outside_text": 1,
                                    "overlapping_spans": 1, "bad_span": 1}
    for i, words in ((3, "outside the text"), (4, "overlap"), (5, "is not")):
        one = _write(tmp_path, f"one{i}.jsonl", json.dumps(rows[i - 1]) + "\n")
        with pytest.raises(DataError, match=f"one{i}.jsonl:1: .*{words}.*Fix:"):
            read_ner(one)


@pytest.mark.integration  # reads 1.8 MB of real data (~5 s idle, more on a loaded machine)
def test_shared_datasets_read():
    wnut = read_ner(os.path.join(SHARED, "wnut16", "wnut16_train.txt"))
    assert (wnut.scheme, len(wnut.examples), len(wnut.types())) == ("BIO", 2394, 10)
    assert wnut.examples[0].entities()[0][3] == "Empire State Building"
    test = os.path.join(SHARED, "msra_ner", "msra_test.txt")
    with pytest.raises(DataError, match=r"msra_test.txt:\d+: .*cannot"):
        read_ner(test)
    msra = read_ner(test, on_bad_row="skip")
    assert msra.scheme == "BMES" and msra.types() == ["LOC", "ORG", "PER"]
    assert len(msra.examples) == 5000 and msra.skipped["repaired_tag_sequence"] > 0
    assert " " not in msra.examples[0].text
    # The README's count (6,446 entities) is reached only with the lenient repair of the
    # malformed ones, which split entities at sentence cuts.
    assert abs(sum(len(e.spans) for e in msra.examples) - 6446) <= 20


# --- offsets ------------------------------------------------------------------------------
def _wordpiece():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "new", "york", "ann", "lee", "met",
             "in", ",", ".", "!", "jose", "##s", "visit", "##ed", "cafe", "the", "@", "un",
             "##i", "a", "##n", "##e", "e"]
    return WordPieceTokenizer(vocab, lowercase=True, strip_accents=True)


ENGLISH = ["  Ann  Lee\tmet\u00a0José in New   York,  visited the Café!  ",
           "@ann  un\u200bi  unknownword ."]
CHINESE = ["  张三　在北京，  见了 Lee 和「中国队」。 ", "北京\t\t上海\r\n广州"]


@pytest.mark.parametrize("text", ENGLISH)
def test_wordpiece_alignment_matches_tokenizer(text):
    tok = _wordpiece()
    al = offsets.align(tok, text)
    assert al.tokens == tok.tokenize(text)
    ids = offsets.encode_ids(tok, al, 40)
    assert ids.tolist() == tok.encode([text], 40)[0].tolist()
    for (a, b) in al.unit_offsets:
        assert text[a:b].strip() == text[a:b] and text[a:b]


@pytest.mark.parametrize("text", CHINESE)
def test_char_alignment_matches_tokenizer(text):
    tok = CharTokenizer.learn([text] * 2, 100)
    al = offsets.align(tok, text)
    assert al.tokens == tok.tokenize(text)
    assert [text[a:b] for a, b in al.unit_offsets] == [c for c in text if not c.isspace()
                                                       and c != "\u3000"]


def _entity_round_trip(tok, text, entities, scheme="BIOES"):
    spans = [Span(text.index(s), text.index(s) + len(s), t) for s, t in entities]
    al = offsets.align(tok, text)
    names = schemes.tag_set({t for _, t in entities}, scheme)
    targets = offsets.encode_targets(al, spans, scheme, {n: i for i, n in enumerate(names)}, 64)
    row = [max(t, 0) for t in targets]  # IGNORE positions read as O
    back = offsets.decode_tags(al, row, names, scheme)
    assert back == spans
    assert [text[s.start:s.end] for s in back] == [s for s, _ in entities]


def test_offsets_map_back_exactly_english():
    _entity_round_trip(_wordpiece(), ENGLISH[0], [("Ann  Lee", "PER"), ("José", "PER"),
                                                  ("New   York", "LOC"), ("Café", "LOC")])
    _entity_round_trip(_wordpiece(), ENGLISH[1], [("@ann", "PER"), ("unknownword", "MISC")])


def test_offsets_map_back_exactly_chinese():
    text = CHINESE[0]
    tok = CharTokenizer.learn([text], 100, )
    _entity_round_trip(tok, text, [("张三", "PER"), ("北京", "LOC"), ("Lee", "PER"),
                                   ("中国队", "ORG")], scheme="BMES")


def test_truncated_units_are_untagged():
    tok = _wordpiece()
    text = "Ann met Lee in New York"
    al = offsets.align(tok, text)
    spans = [Span(0, 3, "PER"), Span(15, 23, "LOC")]
    names = schemes.tag_set(["PER", "LOC"], "BIO")
    targets = offsets.encode_targets(al, spans, "BIO", {n: i for i, n in enumerate(names)}, 6)
    # [CLS] ann met lee in [SEP]: New York does not fit.
    assert targets.tolist() == [-1, names.index("B-PER"), 0, 0, 0, -1]
