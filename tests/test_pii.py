"""PII redaction: checksums against published examples, every print format, look-alikes kept."""
import collections

import pytest

from slm_tf.data.config import DataConfig
from slm_tf.data.pipeline import prepare_data
from slm_tf.data.sources import fingerprint, load_splits
from slm_tf.trust import pii
from slm_tf.trust.pii_bench import cn_id_check, iban_check, luhn_digit, score


def test_generator_checksums_match_published_examples():
    # Luhn's textbook example 79927398713; IBAN examples from the ECBS/Wikipedia IBAN pages;
    # the GB 11643-1999 example ID, checked by hand: sum(d_i * w_i) = 167, 167 mod 11 = 2 -> "X".
    assert luhn_digit("7992739871") == "3"
    assert luhn_digit("411111111111111") == "1"
    assert iban_check("GB", "WEST12345698765432") == "82"
    assert iban_check("DE", "370400440532013000") == "89"
    assert cn_id_check("11010519491231002") == "X"


@pytest.mark.parametrize("number,valid", [
    ("79927398713", True), ("79927398710", False), ("4111 1111 1111 1111", True),
    ("4111 1111 1111 1112", False), ("3782-822463-10005", True)])
def test_card_validator(number, valid):
    # The 11-digit textbook example is too short for a card: check it with Luhn alone.
    digits = number.replace(" ", "").replace("-", "")
    if len(digits) < 13:
        assert pii._luhn.is_valid(digits) is valid
    else:
        assert pii._valid_card(number) is valid


@pytest.mark.parametrize("number,valid", [
    ("GB82 WEST 1234 5698 7654 32", True), ("GB82WEST12345698765432", True),
    ("GB83 WEST 1234 5698 7654 32", False), ("DE89 3704 0044 0532 0130 00", True),
    ("DE89 3704 0044 0532 0130 01", False)])
def test_iban_validator(number, valid):
    assert pii._valid_iban(number) is valid


@pytest.mark.parametrize("number,valid", [
    ("11010519491231002X", True), ("11010519491231002x", True), ("110105194912310021", False),
    ("11010519491331002X", False)])  # the last: month 13, a wrong date
def test_cn_id_validator(number, valid):
    assert pii._valid_cn_id(number) is valid


@pytest.mark.parametrize("text,expected", [
    ("Write to JOHN.DOE@EXAMPLE.COM now", "Write to [EMAIL] now"),
    ("mail li.wei+bank@mail.example.org.", "mail [EMAIL]."),
    ("see https://bank.example.com/help?id=3.", "see [URL]."),
    ("see www.example.com/cards, thanks", "see [URL], thanks"),
    ("card 4111 1111 1111 1111 please", "card [CARD] please"),
    ("card 4111-1111-1111-1111", "card [CARD]"),
    ("card 4111111111111111 was declined", "card [CARD] was declined"),
    ("amex 3782 822463 10005", "amex [CARD]"),
    ("card 4111 1111 1111 1111 2 times", "card [CARD] 2 times"),
    ("IBAN GB82 WEST 1234 5698 7654 32 THANKS", "IBAN [IBAN] THANKS"),
    ("IBAN GB82WEST12345698765432.", "IBAN [IBAN]."),
    ("to de89370400440532013000", "to [IBAN]"),
    ("ID 11010519491231002X ok", "ID [CN_ID] ok"),
    ("ID 110105 19491231 002X", "ID [CN_ID]"),
    ("SSN 536-90-4399.", "SSN [SSN]."),
    ("SSN 536 90 4399", "SSN [SSN]"),
    ("from 192.168.0.1.", "from [IP]."),
    ("from 2001:db8::ff00:42:8329 and FE80::1%eth0", "from [IP] and [IP]"),
    ("from 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "from [IP]"),
    ("call +44 20 7946 0958", "call [PHONE]"),
    ("call +442079460958 now", "call [PHONE] now"),
    ("call +49.30.1234.5678", "call [PHONE]"),
    ("call +1-415-555-2671.", "call [PHONE]."),
    ("call (415) 555-2671", "call [PHONE]"),
    ("call 415.555.2671 or 1-415-555-2671", "call [PHONE] or [PHONE]"),
    ("call 4155552671", "call [PHONE]"),
    ("手机 13800138000 或 138 0013 8000", "手机 [PHONE] 或 [PHONE]"),
    ("call +86 138 0013 8000", "call [PHONE]"),
])
def test_redacts_each_format(text, expected):
    counts = collections.Counter()
    assert pii.redact(text, counts) == expected
    assert sum(counts.values()) == expected.count("[")


@pytest.mark.parametrize("text", [
    "I paid $1,234.56 and €2.500,00 and 1 250 000 GBP", "on 2023-11-05 or 05/11/2023 or 11.05.2023",
    "at 10:30 or 10:30:45 or 7:05 pm", "order #48213377, ORD-2023-884512, ref A1234567",
    "app v2.3.1 or 10.4.2 or 4.1.0-beta", "number 4111 1111 1111 1112 fails Luhn",
    "number 1234567812345678 fails Luhn", "GB83 WEST 1234 5698 7654 32 fails mod 97",
    "DE00370400440532013000 fails mod 97", "11010519491231002 1 is no ID",
    "110105194912310021 has a wrong check character", "000-12-3456 is not an SSN",
    "999.1.1.1 is no address", "52 345 678.90 is an amount", "mac 00:1A:2B:3C:4D:5E",
])
def test_leaves_lookalikes(text):
    assert pii.redact(text) == text


def test_benchmark_recall_and_false_changes_on_banking77_texts():
    base = [ex.text for ex in load_splits(DataConfig(data="banking77")).test]
    r = score(base[:300], per_type=20, per_kind=10, seed=3)
    assert r["recall"] >= 0.99 and r["false_change_rate"] <= 0.01
    assert set(r["recall_per_type"]) == set(pii.PLACEHOLDERS)


def test_redact_pii_applies_when_read_and_counts_land_in_the_summary(tmp_path):
    rows = ["text,label"] + [f"my card 4111 1111 1111 1111 row {i},a" for i in range(10)] + \
        [f"write to a{i}@example.com or call (415) 555-2671,b" for i in range(10)]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    plain = DataConfig(data=str(path), data_dir=str(tmp_path / "tfds"))
    red = DataConfig(data=str(path), data_dir=str(tmp_path / "tfds"), redact_pii=True)
    assert fingerprint(plain, [str(path)]) != fingerprint(red, [str(path)])
    data = prepare_data(red)
    texts = [ex.text for s in ("train", "validation", "test") for ex in data.splits.split(s)]
    assert not any("@" in t or "4111" in t or "555" in t for t in texts)
    assert sum("[CARD]" in t for t in texts) == 10
    summary = data.summary()
    assert summary["pii_redacted"] == {"CARD": 10, "EMAIL": 10, "PHONE": 10}
    assert summary["pii_redacted_total"] == 30
    assert "pii_redacted" not in prepare_data(plain).summary()
    assert any("4111" in ex.text for ex in prepare_data(plain).splits.train)
