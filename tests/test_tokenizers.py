"""Tokenizers: in-graph ids equal the pure-Python reference, on English and Chinese."""
import csv
import os

import numpy as np
import pytest
import tensorflow as tf

from slm_tf.data.sources import EMBEDDED_DIR
from slm_tf.errors import UserError
from slm_tf.tokenizers import (CharTokenizer, TokenizerConfig, WordPieceTokenizer,
                               build_tokenizer, load_tokenizer)
from slm_tf.tokenizers.base import SPECIAL_TOKENS
from slm_tf.tokenizers.normalize import pretokenize_py, pretokenize_tf

CHINESE = ["我想查询我的账户余额。", "信用卡被盗了，怎么办？", "为什么我的转账还没到账", "汇率是多少？ABC银行",
           "請問如何開通網上銀行", "我昨天在ATM取了500元，但是卡被吞了！"]
TRICKY = ["Héllo, WORLD!! naïve café—résumé…", "tabs\tand\nnewlines\u00a0nbsp", "", "   ",
          "emoji 😀 and symbols $%^&* ++", "x" * 150, "Ünïcödé ＦＵＬＬＷＩＤＴＨ ２０２４",
          "zero\u200bwidth", "mixed 中文 and English, 好的!"]


def _banking_texts(n=400):
    with open(os.path.join(EMBEDDED_DIR, "banking77", "test.csv"), encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)][:n]


@pytest.fixture(scope="module")
def corpus():
    return _banking_texts(2000) + CHINESE * 3


@pytest.mark.parametrize("lowercase,strip", [(True, True), (False, False)])
def test_pretokenizers_agree(lowercase, strip):
    texts = _banking_texts(200) + CHINESE + TRICKY
    got = pretokenize_tf(tf.constant(texts), lowercase, strip).to_list()
    want = [pretokenize_py(t, lowercase, strip) for t in texts]
    assert [[w.decode() for w in row] for row in got] == want


def test_pretokenizer_isolates_cjk_and_punctuation():
    assert pretokenize_py("我的卡,Card!", True, True) == ["我", "的", "卡", ",", "card", "!"]


@pytest.mark.parametrize("kind", ["wordpiece", "char"])
def test_in_graph_ids_equal_python_ids(corpus, kind):
    tok = build_tokenizer(TokenizerConfig(tokenizer=kind, vocab_size=600), corpus)
    texts = _banking_texts(400) + CHINESE + TRICKY
    py = tok.encode(texts, 24)
    graph = tok.tf_encode(tf.constant(texts), 24).numpy()
    assert py.dtype == graph.dtype == np.int32
    np.testing.assert_array_equal(py, graph)
    assert (py[:, 0] == tok.cls_id).all()
    assert (py == tok.unk_id).mean() < 0.2


def test_word_boundaries_put_one_space_token_between_words(corpus):
    tok = build_tokenizer(TokenizerConfig(tokenizer="char", vocab_size=600,
                                          word_boundaries=True), corpus)
    assert tok.vocab[len(SPECIAL_TOKENS)] == "[SPACE]" and tok.config()["word_boundaries"]
    # Runs of spaces, tabs and newlines are one boundary; none at either end.
    assert tok.tokenize("  Ab \t\n c  ") == ["a", "b", "[SPACE]", "c"]
    assert tok.tokenize("   ") == []
    texts = _banking_texts(200) + CHINESE + TRICKY
    np.testing.assert_array_equal(tok.encode(texts, 48),
                                  tok.tf_encode(tf.constant(texts), 48).numpy())
    # Without the option, the same corpus gives no [SPACE] and drops spaces as before.
    plain = build_tokenizer(TokenizerConfig(tokenizer="char", vocab_size=600), corpus)
    assert "[SPACE]" not in plain.vocab and plain.tokenize("a b") == ["a", "b"]
    with pytest.raises(UserError, match="--word_boundaries is a char tokenizer option"):
        build_tokenizer(TokenizerConfig(tokenizer="wordpiece", word_boundaries=True), corpus)


def test_word_boundaries_survive_save_and_load(tmp_path, corpus):
    tok = CharTokenizer.learn(corpus, 300, word_boundaries=True)
    tok.save(str(tmp_path))
    again = load_tokenizer(str(tmp_path))
    assert again.space_id == tok.space_id == len(SPECIAL_TOKENS)
    np.testing.assert_array_equal(again.encode(CHINESE + TRICKY, 32),
                                  tok.encode(CHINESE + TRICKY, 32))


def test_wordpiece_learns_subwords_and_respects_size(corpus):
    tok = WordPieceTokenizer.learn(corpus, vocab_size=500)
    assert tok.vocab_size <= 500
    assert tok.vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert any(v.startswith("##") for v in tok.vocab)
    pieces = tok.tokenize("unrecognizably")
    assert len(pieces) > 1 and all(p.startswith("##") for p in pieces[1:])


def test_wordpiece_vocab_size_is_an_upper_bound_when_the_learner_overshoots():
    """tensorflow-text's learner aims at its size: here every target from 600 to 1,400 gives
    767 pieces (two word frequencies only, so its count thresholds step coarsely)."""
    import random
    import string
    r = random.Random(0)
    words = ["".join(r.choice(string.ascii_lowercase) for _ in range(8)) for _ in range(1500)]
    texts = [" ".join(words[:500] * 3), " ".join(words[500:] * 2)]
    tok = WordPieceTokenizer.learn(texts, 600)
    assert len(tok.vocab) <= 600
    assert tok.vocab[:len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    unk = tok.vocab.index("[UNK]")
    assert unk not in tok.encode(texts, 6000)  # every word still covered by its pieces


def test_wordpiece_truncation_keeps_characters_then_frequent_words():
    from collections import Counter
    from slm_tf.tokenizers.wordpiece import _truncate
    vocab = list(SPECIAL_TOKENS) + ["a", "b", "##a", "##b", "ab", "ba", "bb", "##ab"]
    counts = Counter({"ba": 5, "ab": 1, "bb": 3})
    base = len(SPECIAL_TOKENS) + 4  # specials and the four single characters
    # By hand: then the words by count (ba 5, bb 3, ab 1), then suffix pieces; learner order kept.
    assert _truncate(vocab, base + 2, counts) == list(SPECIAL_TOKENS) + \
        ["a", "b", "##a", "##b", "ba", "bb"]
    assert _truncate(vocab, base + 4, counts) == vocab
    with pytest.raises(UserError, match="raise --vocab_size"):
        _truncate(vocab, base - 1, counts)


def test_bert_vocab_file_and_greedy_longest_match(tmp_path):
    vocab = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able",
             "aff", "##a", "card", "!", "我"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = build_tokenizer(TokenizerConfig(vocab_file=str(path)), [])
    assert tok.tokenize("Unaffable card! 我 xyz") == ["un", "##aff", "##able", "card", "!", "我",
                                                     "[UNK]"]
    ids = tok.encode(["unaffable"], 6)[0].tolist()
    assert ids == [3, 6, 7, 8, 4, 0]
    np.testing.assert_array_equal(tok.tf_encode(tf.constant(["unaffable"]), 6).numpy()[0], ids)
    with pytest.raises(UserError, match="no such vocabulary file"):
        build_tokenizer(TokenizerConfig(vocab_file=str(tmp_path / "nope.txt")), [])
    bad = tmp_path / "bad.txt"
    bad.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(UserError, match="lacks the special tokens"):
        build_tokenizer(TokenizerConfig(vocab_file=str(bad)), [])


def test_truncation_keeps_cls_and_sep():
    tok = CharTokenizer.learn(["abcdef"], 50, min_frequency=1)
    ids = tok.encode(["abcdefabcdef"], 5)[0]
    assert ids.tolist() == [tok.cls_id, *[tok.token_to_id[c] for c in "abc"], tok.sep_id]


@pytest.mark.parametrize("cls", [WordPieceTokenizer, CharTokenizer])
def test_save_and_load_round_trip(tmp_path, corpus, cls):
    tok = cls.learn(corpus, 300)
    tok.save(str(tmp_path))
    again = load_tokenizer(str(tmp_path))
    assert type(again) is cls and again.vocab == tok.vocab
    texts = CHINESE + _banking_texts(50)
    np.testing.assert_array_equal(again.encode(texts, 16), tok.encode(texts, 16))
