"""A seeded labelled PII set (valid checksums, common print formats) and non-PII look-alikes.

The generator computes every checksum itself (Luhn, ISO 7064 MOD 97-10 and MOD 11-2), so the
benchmark does not grade the redactor's checksum library with its own code.
"""
import collections
import random
import string
from typing import Dict, List, Tuple

from slm_tf.trust import pii

# Regional BBAN layouts without a national check digit: (country, length, letters in front).
_IBAN_LAYOUTS = (("DE", 18, 0), ("GB", 18, 4), ("NL", 14, 4), ("AT", 16, 0), ("CH", 17, 0),
                 ("IE", 18, 4), ("DK", 14, 0), ("SE", 20, 0))
_CN_REGIONS = ("110105", "310104", "440305", "330106", "510107", "420111", "320102")
_WORDS = ("alex", "maria.lopez", "j.smith", "li.wei", "support", "anna+bank", "t_nguyen")
_DOMAINS = ("example.com", "mail.example.org", "bank.co.uk", "qq.com", "uni-hamburg.de")


def luhn_digit(payload: str) -> str:
    """The Luhn check digit that makes ``payload + digit`` valid."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def iban_check(country: str, bban: str) -> str:
    """The two MOD 97-10 check digits of an IBAN (ISO 13616)."""
    moved = bban + country + "00"
    value = int("".join(str(int(c, 36)) for c in moved))
    return f"{98 - value % 97:02d}"


def cn_id_check(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a Chinese resident ID (GB 11643-1999)."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights)) % 11]


def _group(s: str, sizes, sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(s[i:i + n])
        i += n
    if i < len(s):
        out.append(s[i:])
    return sep.join(p for p in out if p)


def _card(r: random.Random) -> Tuple[str, str]:
    kind = r.choice(("visa16", "mc16", "amex15", "visa13", "unionpay19"))
    prefix, length = {"visa16": ("4", 16), "mc16": (str(r.randint(51, 55)), 16),
                      "amex15": (r.choice(("34", "37")), 15), "visa13": ("4", 13),
                      "unionpay19": ("62", 19)}[kind]
    body = prefix + "".join(r.choice(string.digits) for _ in range(length - 1 - len(prefix)))
    number = body + luhn_digit(body)
    style = r.choice(("unspaced", "spaced", "dashed"))
    sizes = (4, 6, 5) if length == 15 else (4, 4, 4, 4, 3)
    if style == "unspaced":
        return number, f"card_{style}"
    return _group(number, sizes, " " if style == "spaced" else "-"), f"card_{style}"


def _iban(r: random.Random) -> Tuple[str, str]:
    country, length, letters = r.choice(_IBAN_LAYOUTS)
    bban = "".join(r.choice(string.ascii_uppercase) for _ in range(letters)) + "".join(
        r.choice(string.digits) for _ in range(length - letters))
    number = country + iban_check(country, bban) + bban
    if r.random() < 0.5:
        return number, "iban_unspaced"
    return _group(number, [4] * 8, " "), "iban_spaced"


def _cn_id(r: random.Random) -> Tuple[str, str]:
    birth = f"{r.randint(1950, 2005)}{r.randint(1, 12):02d}{r.randint(1, 28):02d}"
    first = r.choice(_CN_REGIONS) + birth + f"{r.randint(1, 999):03d}"
    return first + cn_id_check(first), "cn_id"


def _ssn(r: random.Random) -> Tuple[str, str]:
    area = r.choice([a for a in range(1, 900) if a != 666])
    sep = r.choice(("-", " "))
    return f"{area:03d}{sep}{r.randint(1, 99):02d}{sep}{r.randint(1, 9999):04d}", "ssn"


def _phone(r: random.Random) -> Tuple[str, str]:
    style = r.choice(("e164_compact", "e164_spaced", "e164_dashed", "e164_dotted", "nanp_paren",
                      "nanp_dashed", "nanp_dotted", "nanp_1", "cn_mobile", "cn_mobile_spaced",
                      "cn_mobile_intl"))
    nanp = f"{r.randint(2, 9)}{r.randint(0, 99):02d}{r.randint(2, 9)}{r.randint(0, 999999):06d}"
    cn = f"1{r.randint(3, 9)}{r.randint(0, 999999999):09d}"
    intl = r.choice((("44", "20", 8), ("49", "30", 8), ("33", "6", 8), ("61", "4", 8),
                     ("1", "415", 7), ("91", "98", 8)))
    cc, area, n = intl
    sub = "".join(r.choice(string.digits) for _ in range(n))
    if style == "e164_compact":
        return f"+{cc}{area}{sub}", style
    if style in ("e164_spaced", "e164_dashed", "e164_dotted"):
        sep = {"e164_spaced": " ", "e164_dashed": "-", "e164_dotted": "."}[style]
        return sep.join(("+" + cc, area, sub[:4], sub[4:])), style
    if style == "nanp_paren":
        return f"({nanp[:3]}) {nanp[3:6]}-{nanp[6:]}", style
    if style in ("nanp_dashed", "nanp_dotted"):
        sep = "-" if style == "nanp_dashed" else "."
        return sep.join((nanp[:3], nanp[3:6], nanp[6:])), style
    if style == "nanp_1":
        return f"1-{nanp[:3]}-{nanp[3:6]}-{nanp[6:]}", style
    if style == "cn_mobile":
        return cn, style
    if style == "cn_mobile_spaced":
        return f"{cn[:3]} {cn[3:7]} {cn[7:]}", style
    return f"+86 {cn[:3]} {cn[3:7]} {cn[7:]}", style


def _email(r: random.Random) -> Tuple[str, str]:
    address = f"{r.choice(_WORDS)}{r.randint(1, 99)}@{r.choice(_DOMAINS)}"
    if r.random() < 0.4:
        return address.upper(), "email_upper"
    return address, "email"


def _ip(r: random.Random) -> Tuple[str, str]:
    style = r.choice(("ipv4", "ipv6_full", "ipv6_compressed", "ipv6_upper"))
    if style == "ipv4":
        return ".".join(str(r.randint(1, 254)) for _ in range(4)), style
    groups = [f"{r.randint(0, 65535):x}" for _ in range(8)]
    if style == "ipv6_full":
        return ":".join(groups), style
    text = "2001:db8::" + ":".join(groups[:r.randint(1, 4)])
    return (text.upper(), style) if style == "ipv6_upper" else (text, style)


def _url(r: random.Random) -> Tuple[str, str]:
    path = "/".join(r.choice(("help", "account", "cards", "faq", "x9")) for _ in range(r.randint(0, 3)))
    host = r.choice(("www.example.com", "bank.example.org", "app.mybank.co.uk"))
    scheme = r.choice(("https://", "http://", "")) if host.startswith("www.") else \
        r.choice(("https://", "http://"))
    query = f"?id={r.randint(1, 9999)}" if r.random() < 0.3 else ""
    return f"{scheme}{host}/{path}{query}", "url"


GENERATORS = {"EMAIL": _email, "PHONE": _phone, "CARD": _card, "IBAN": _iban, "CN_ID": _cn_id,
              "SSN": _ssn, "IP": _ip, "URL": _url}
_LEADS = {"EMAIL": "my email is", "PHONE": "call me on", "CARD": "my card number is",
          "IBAN": "send it to", "CN_ID": "my ID number is", "SSN": "my SSN is",
          "IP": "the app showed", "URL": "the page"}


def _embed(r: random.Random, text: str, lead: str, value: str) -> str:
    words = text.split()
    where = r.choice(("end", "start", "middle"))
    if where == "end":
        return f"{text} {lead[0].upper() + lead[1:]} {value}."
    if where == "start":
        return f"{value} - {text}"
    cut = r.randint(1, max(1, len(words) - 1))
    return " ".join(words[:cut] + [f"({lead} {value})"] + words[cut:])


def pii_set(base_texts: List[str], per_type: int, seed: int) -> List[Dict]:
    """``per_type`` PII strings of each type, each embedded in a base text."""
    r = random.Random(seed)
    out = []
    for kind, gen in GENERATORS.items():
        for _ in range(per_type):
            value, fmt = gen(r)
            out.append({"type": kind, "format": fmt, "value": value,
                        "text": _embed(r, r.choice(base_texts), _LEADS[kind], value)})
    return out


def _not_luhn16(r):
    body = "".join(r.choice(string.digits) for _ in range(15))
    bad = str((int(luhn_digit(body)) + r.randint(1, 9)) % 10)
    number = body + bad
    return number if r.random() < 0.5 else _group(number, (4, 4, 4, 4), " ")


def _not_mod97(r):
    country, length, letters = r.choice(_IBAN_LAYOUTS)
    bban = "".join(r.choice(string.ascii_uppercase) for _ in range(letters)) + "".join(
        r.choice(string.digits) for _ in range(length - letters))
    good = int(iban_check(country, bban))
    number = country + f"{(good + r.randint(1, 96) - 2) % 97 + 2:02d}" + bban
    return number if r.random() < 0.5 else _group(number, [4] * 8, " ")


def _bad_cn_id(r):
    value, _ = _cn_id(r)
    wrong = r.choice([c for c in "0123456789X" if c != value[-1]])
    return value[:-1] + wrong


LOOKALIKES = {
    "amount": lambda r: r.choice((f"${r.randint(1, 99999):,}.{r.randint(0, 99):02d}",
                                  f"€{r.randint(1, 9999)},{r.randint(0, 99):02d}",
                                  f"{r.randint(1, 999)} {r.randint(0, 999):03d} GBP",
                                  f"{r.randint(100, 99999)} USD")),
    "date": lambda r: r.choice((f"{r.randint(2000, 2030)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
                                f"{r.randint(1, 28):02d}/{r.randint(1, 12):02d}/{r.randint(2000, 2030)}",
                                f"{r.randint(1, 28):02d}.{r.randint(1, 12):02d}.{r.randint(2000, 2030)}",
                                f"{r.randint(1, 28)} March {r.randint(2000, 2030)}")),
    "time": lambda r: r.choice((f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}",
                                f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}",
                                f"{r.randint(1, 12)}:{r.randint(0, 59):02d} pm")),
    "order_number": lambda r: r.choice((f"#{r.randint(10000, 99999999)}",
                                        f"ORD-{r.randint(2000, 2030)}-{r.randint(100000, 999999)}",
                                        f"A{r.randint(1000000, 9999999)}",
                                        f"{r.randint(100000, 99999999)}")),
    "version": lambda r: r.choice((f"v{r.randint(1, 20)}.{r.randint(0, 30)}.{r.randint(0, 99)}",
                                   f"{r.randint(1, 20)}.{r.randint(0, 30)}.{r.randint(0, 99)}",
                                   f"{r.randint(1, 20)}.{r.randint(0, 9)}.{r.randint(0, 9)}-beta")),
    "card_failing_luhn": _not_luhn16,
    "iban_failing_mod97": _not_mod97,
    "cn_id_bad_checksum": _bad_cn_id,
}


def lookalike_set(base_texts: List[str], per_kind: int, seed: int) -> List[Dict]:
    """``per_kind`` non-PII look-alikes of each kind, each embedded in a base text."""
    r = random.Random(seed + 1)
    out = []
    for kind, gen in LOOKALIKES.items():
        for _ in range(per_kind):
            value = gen(r)
            out.append({"kind": kind, "value": value,
                        "text": _embed(r, r.choice(base_texts), "the reference is", value)})
    return out


def score(base_texts: List[str], per_type: int, per_kind: int, seed: int) -> Dict:
    """Recall per type and format on the PII set; share of changed texts on the base texts and
    on the look-alikes; up to 10 misses and false changes each, to read."""
    positives = pii_set(base_texts, per_type, seed)
    by_type, by_format, misses = collections.Counter(), collections.Counter(), []
    n_type, n_format = collections.Counter(), collections.Counter()
    for item in positives:
        before = collections.Counter()
        pii.redact(item["text"].replace(item["value"], " "), before)
        counts = collections.Counter()
        out = pii.redact(item["text"], counts)
        hit = item["value"] not in out and counts[item["type"]] > before[item["type"]]
        n_type[item["type"]] += 1
        n_format[item["format"]] += 1
        by_type[item["type"]] += hit
        by_format[item["format"]] += hit
        if not hit and len(misses) < 10:
            misses.append({"in": item["text"], "out": out, "type": item["type"]})
    changed_base = [t for t in base_texts if pii.redact(t) != t]
    negatives = lookalike_set(base_texts, per_kind, seed)
    changed_neg = collections.Counter()
    false_changes = []
    for item in negatives:
        out = pii.redact(item["text"])
        if out != item["text"]:
            changed_neg[item["kind"]] += 1
            if len(false_changes) < 10:
                false_changes.append({"in": item["text"], "out": out})
    n_neg = len(negatives)
    total_neg = len(base_texts) + n_neg
    return {
        "pii_strings": len(positives),
        "recall": sum(by_type.values()) / len(positives),
        "recall_per_type": {k: by_type[k] / n_type[k] for k in n_type},
        "recall_per_format": {k: by_format[k] / n_format[k] for k in sorted(n_format)},
        "untouched_texts": len(base_texts),
        "untouched_changed": len(changed_base),
        "lookalikes": n_neg,
        "lookalikes_changed_per_kind": {k: changed_neg[k] for k in LOOKALIKES},
        "false_change_rate": (len(changed_base) + sum(changed_neg.values())) / total_neg,
        "misses": misses,
        "false_changes": false_changes + [{"in": t, "out": pii.redact(t)}
                                          for t in changed_base[:10]],
    }
