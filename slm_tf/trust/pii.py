"""PII redaction: typed placeholders for e-mail, phone, card, IBAN, Chinese ID, SSN, IP and URL.

Pure Python (no TensorFlow), so the same function runs in training, in evaluation and in a
serving process; BUILD.md spells the rules out as steps an Android app can reimplement.

Every detector is a regular expression that proposes a candidate plus a validator that must
accept it: card numbers pass Luhn, IBANs mod 97 and their country's BBAN layout, Chinese
resident IDs the ISO 7064 MOD 11-2 check digit and a real birth date, IP addresses Python's
``ipaddress`` parser, phone numbers a digit count and a grouping rule. The checksum code is
python-stdnum's (maintained, pure Python, covers every scheme we need). Detectors run in a fixed
order (URL and e-mail first, because they contain digits and dots the others would take apart).
"""
import collections
import ipaddress
import re
from typing import Callable, Counter, Iterable, List, Optional, Tuple

from stdnum import iban as _iban
from stdnum import luhn as _luhn
from stdnum.cn import ric as _ric
from stdnum.us import ssn as _ssn

PLACEHOLDERS = {"URL": "[URL]", "EMAIL": "[EMAIL]", "IBAN": "[IBAN]", "IP": "[IP]",
                "CN_ID": "[CN_ID]", "CARD": "[CARD]", "SSN": "[SSN]", "PHONE": "[PHONE]"}

# A number must not start inside another number ("12 34" or "+1 ...") or a word, nor end
# right before one, or a 16-digit number failing Luhn would leak a valid 10-digit phone.
_NUM_START = r"(?<![\w+])(?<![\d][ .-])(?<![\d][ .-]\()"
_NUM_END = r"(?![ .-]?\d)(?!\w)"
_SEP = re.compile(r"[ .()-]+")


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def _groups(s: str) -> List[int]:
    return [len(g) for g in _SEP.split(s.strip("+() ")) if g]


def _valid_card(s: str) -> bool:
    d = _digits(s)
    if len(d) == 18 and _has_birth_date(d):
        return False  # shaped like a resident ID whose check character failed: not a card
    return 13 <= len(d) <= 19 and len(set(d)) > 1 and _luhn.is_valid(d)


def _has_birth_date(number: str) -> bool:
    try:
        _ric.get_birth_date(number)
    except ValueError:  # stdnum's InvalidComponent is a ValueError
        return False
    return True


def _valid_iban(s: str) -> bool:
    return _iban.is_valid(s.upper())


def _valid_cn_id(s: str) -> bool:
    # stdnum's ric.is_valid also looks the region code up in its table, which lacks codes that
    # were abolished (e.g. 320102); IDs issued under them stay valid for life, so check only the
    # MOD 11-2 check character and the birth date.
    number = s.replace(" ", "").upper()
    return number[:-1].isdigit() and number[-1] == _ric.calc_check_digit(number) and \
        _has_birth_date(number)


def _valid_ssn(s: str) -> bool:
    return _ssn.is_valid(_digits(s))


def _valid_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _valid_phone(s: str) -> bool:
    """E.164 (``+`` then 8-15 digits, any grouping); otherwise only the shapes of a North
    American number (3-3-4, optionally after a 1) or a Chinese mobile (1[3-9]x, 11 digits, 3-4-4),
    so amounts, dates and order numbers with other groupings stay."""
    d = _digits(s)
    if s.startswith("+"):
        return 8 <= len(d) <= 15
    groups = _groups(s)
    if re.fullmatch(r"[2-9]\d\d[2-9]\d{6}", d):
        return groups in ([10], [3, 3, 4])
    if re.fullmatch(r"1[2-9]\d\d[2-9]\d{6}", d) and groups in ([1, 3, 3, 4], [1, 10]):
        return True
    return re.fullmatch(r"1[3-9]\d{9}", d) is not None and groups in ([11], [3, 4, 4])


Validator = Callable[[str], bool]

# (type, candidate pattern, validator, trailing characters to give back, cut at spaces).
_DETECTORS: List[Tuple[str, "re.Pattern", Optional[Validator], str, bool]] = [
    ("URL", re.compile(r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"']+", re.I), None, ".,;:!?)]}'\"",
     False),
    ("EMAIL", re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
                         r"(?![\w-])"), None, "", False),
    ("IBAN", re.compile(r"(?<!\w)[A-Za-z]{2}\d\d(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}"
                         r"(?: [A-Za-z0-9]{1,4})?)(?!\w)"), _valid_iban,
     "", True),
    ("IP", re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|"
                      r"\d{1,3}(?:\.\d{1,3}){3})?(?:%\w+)?(?![\w:])"), _valid_ip, "", False),
    ("IP", re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)"), _valid_ip, "", False),
    ("CN_ID", re.compile(_NUM_START + r"\d{6} ?\d{8} ?\d{3}[\dXx]" + _NUM_END), _valid_cn_id, "",
     False),
    ("CARD", re.compile(_NUM_START + r"\d(?:[ -]?\d){12,18}" + _NUM_END), _valid_card, "", True),
    ("SSN", re.compile(_NUM_START + r"\d{3}([- ])\d\d\1\d{4}" + _NUM_END), _valid_ssn, "", False),
    ("PHONE", re.compile(_NUM_START + r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d+"
                         r"(?:[ .-]\d+)*" + _NUM_END), _valid_phone, "", False),
]


# The groups before a number that would make it the tail of an IBAN-shaped string.
_IBAN_HEAD = re.compile(r"(?<!\w)[A-Za-z]{2}\d\d(?: [A-Za-z0-9]{4})+ $")


def _accept(text: str, validator: Optional[Validator], cut_at_spaces: bool) -> Optional[str]:
    """The longest acceptable prefix of a candidate: the whole, or (for groups written with
    spaces, where the next word or number may have been swallowed) a prefix cut at a space."""
    if validator is None or validator(text):
        return text
    if cut_at_spaces:
        cuts = [m.start() for m in re.finditer(" ", text)]
        for cut in reversed(cuts):
            if validator(text[:cut]):
                return text[:cut]
    return None


def _apply(text: str, kind: str, pattern, validator, give_back: str, cut: bool,
           counts: Counter) -> str:
    out, pos = [], 0
    while True:
        m = pattern.search(text, pos)
        if m is None:
            break
        candidate = m.group(0).rstrip(give_back) if give_back else m.group(0)
        accepted = _accept(candidate, validator, cut) if candidate else None
        if accepted and kind != "IBAN" and _IBAN_HEAD.search(text, max(0, m.start() - 40),
                                                            m.start()):
            accepted = None
        if accepted is None:
            out.append(text[pos:m.start() + 1])
            pos = m.start() + 1
            continue
        out.append(text[pos:m.start()])
        out.append(PLACEHOLDERS[kind])
        counts[kind] += 1
        pos = m.start() + len(accepted)
    out.append(text[pos:])
    return "".join(out)


def redact(text: str, counts: Optional[Counter] = None) -> str:
    """``text`` with every detected PII span replaced by its typed placeholder (``[EMAIL]`` ...);
    adds one to ``counts[type]`` per replacement when ``counts`` is given."""
    counts = collections.Counter() if counts is None else counts
    for kind, pattern, validator, give_back, cut in _DETECTORS:
        text = _apply(text, kind, pattern, validator, give_back, cut, counts)
    return text


def redact_all(texts: Iterable[str]) -> Tuple[List[str], Counter]:
    """Redacts every text; returns the texts and the number of replacements per type."""
    counts: Counter = collections.Counter()
    return [redact(t, counts) for t in texts], counts
