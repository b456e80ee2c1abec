"""scripts/bench_recipes.py: the automatic recipe beside the TF-IDF baseline, read back from the
run it trained (tiny Chinese corpus, two epochs)."""
import json
import os
import random

import pytest
from conftest import run_script, write_csv

NEG, POS = "坏差慢贵烂糟", "好快美棒妙佳"


def _corpus(folder):
    """A Chinese corpus whose classes use disjoint characters (any bag of characters separates
    them: the baseline must score 1.0)."""
    os.makedirs(folder)
    rng = random.Random(0)
    for split, n in (("train", 40), ("validation", 10), ("test", 10)):
        rows = [("".join(rng.choice(chars) for _ in range(10)), label)
                for i in range(n) for chars, label in ((NEG, "neg"), (POS, "pos"))]
        write_csv(os.path.join(folder, f"{split}.csv"), rows)


@pytest.mark.integration
def test_bench_recipes_reports_the_run_and_its_baseline(tmp_path):
    corpora, out = str(tmp_path / "corpora"), str(tmp_path / "bench")
    _corpus(os.path.join(corpora, "toy_zh"))
    args = [f"--output_dir={out}", f"--corpora_dir={corpora}", "--datasets=toy_zh",
            "--overrides=epochs=2"]
    run_script("bench_recipes", *args, timeout=600)
    with open(os.path.join(out, "bench_recipes.json"), encoding="utf-8") as f:
        row = json.load(f)["datasets"]["toy_zh"]
    run_dir = os.path.join(out, "toy_zh", "train")
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    assert row["baseline_accuracy"] == 1.0 == metrics["baseline"]["accuracy"]
    assert row["test_accuracy"] == metrics["accuracy"]
    assert row["gap_points"] == pytest.approx(100 * (metrics["accuracy"] - 1.0), abs=0.01)
    assert row["meets_line"] == (metrics["accuracy"] >= 0.995)
    # All text is CJK: the automatic recipe tokenizes by character; epochs was given.
    assert row["recipe"]["tokenizer"] == "char" and "epochs" not in row["recipe"]
    assert row["profile"]["cjk_share"] == 1.0 and row["test_examples"] == 20
    with open(os.path.join(run_dir, "data_profile.json"), encoding="utf-8") as f:
        assert json.load(f)["choices"]["tokenizer"]["value"] == "char"
    # A complete run is read back, not retrained; a bad name fails before any training.
    stamp = os.path.getmtime(os.path.join(run_dir, "metrics.json"))
    run_script("bench_recipes", *args, timeout=600)
    assert os.path.getmtime(os.path.join(run_dir, "metrics.json")) == stamp
    bad = run_script("bench_recipes", f"--output_dir={out}", "--datasets=nosuch",
                     timeout=120, check=False)
    assert bad.returncode == 2 and "nosuch" in bad.stderr + bad.stdout
