"""Reversible LM tokenizers: exact round trips, in-graph == pure-Python ids, save/load."""
import numpy as np
import pytest
import tensorflow as tf

from slm_tf.tokenizers import TOKENIZERS, load_tokenizer
from slm_tf.tokenizers.reversible import escape_token, unescape_token

EDGE_CASES = [
    "To be, or not to be: that is the question.",
    "   leading spaces", "trailing spaces   ", "multiple    inner   spaces",
    "line one\nline two\n\n\nthree blank\r\nwindows line", "\ttabs\tand  \t mixed\t",
    "中华人民共和国成立于1949年。北京是首都！", "emoji 😀👍🏽 and flags 🇫🇷",
    "Mixed 中文 English, Ελληνικά, русский, العربية, 日本語のテキスト", "CamelCase UPPER lower",
    "back\\slash \\u0041 not an escape", "", " ", "\n",
]
TRAIN = [
    "To be, or not to be: that is the question:\nWhether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\n" * 3,
    "北京是中华人民共和国的首都。上海是最大的城市。\n" * 3,
    "Numbers 12345 and 2024; tabs\there. UPPER lower Mixed.\n" * 3,
]


def _learn(kind):
    if kind == "sentencepiece":
        return TOKENIZERS.get(kind).learn(TRAIN, 400)
    return TOKENIZERS.get(kind).learn(TRAIN + EDGE_CASES, 1000)


@pytest.mark.parametrize("kind", ["char_exact", "sentencepiece"])
def test_round_trip_is_exact(kind):
    tok = _learn(kind)
    for text in EDGE_CASES:
        assert tok.detokenize(tok.ids(text)) == text, (kind, text)


def test_sentencepiece_round_trips_unseen_characters_through_bytes():
    tok = _learn("sentencepiece")
    text = "Zebra ŽŽ 🦓 龍 never seen"
    ids = tok.ids(text)
    assert tok.unk_id not in ids
    assert tok.detokenize(ids) == text


@pytest.mark.parametrize("kind", ["char_exact", "sentencepiece"])
def test_in_graph_ids_equal_pure_python_ids(kind):
    tok = _learn(kind)
    graph = tok.tf_token_ids(tf.constant(EDGE_CASES)).to_list()
    assert graph == [tok.ids(t) for t in EDGE_CASES]


@pytest.mark.parametrize("kind", ["char_exact", "sentencepiece"])
def test_save_and_load_keep_the_ids(kind, tmp_path):
    tok = _learn(kind)
    tok.save(str(tmp_path))
    again = load_tokenizer(str(tmp_path))
    assert type(again) is type(tok)
    for text in EDGE_CASES:
        assert again.ids(text) == tok.ids(text)
        assert again.detokenize(again.ids(text)) == text


def test_char_exact_keeps_case_and_whitespace_as_tokens():
    tok = _learn("char_exact")
    ids = tok.ids("A a\n")
    assert len(ids) == 4 and len(set(ids)) == 4  # 'A', 'a', ' ', '\n' all distinct
    unk = tok.ids("\u2603")  # a snowman never seen
    assert unk == [tok.unk_id] and tok.detokenize(unk) == "\ufffd"


def test_vocab_escaping_is_reversible_and_single_line():
    for token in [" ", "\n", "\r", "\t", "\\", "\u2028", "a b", "\\u0041"]:
        spelled = escape_token(token)
        assert "\n" not in spelled and "\r" not in spelled and spelled.strip() == spelled
        assert unescape_token(spelled) == token


def test_classification_tokenizers_refuse_to_detokenize():
    from slm_tf.errors import UserError
    tok = TOKENIZERS.get("char").learn(["abc abc"], 50)
    with pytest.raises(UserError, match="char_exact or sentencepiece"):
        tok.detokenize([5, 6])
    assert np.array_equal(tok.ids("ab"), [tok.token_to_id["a"], tok.token_to_id["b"]])
