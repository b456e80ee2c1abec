"""scripts/bench_fewshot.py --notrain: the learning curve from finished runs only, with the
runs still missing and the resumed ones listed (the partial curve README shows while runs are
pending)."""
import json

import numpy as np
import pytest
from conftest import finished_run, run_script


@pytest.mark.integration
def test_notrain_averages_finished_runs_and_lists_the_missing_ones(tmp_path):
    out = tmp_path / "curve"
    accs = {("scratch", 10, "1"): 0.60, ("scratch", 10, "2"): 0.66, ("scratch", 0, "1"): 0.88,
            ("teacher_full", 10, "1"): 0.81}
    for (system, k, seed), acc in accs.items():
        finished_run(str(out / f"{system}_k{k}_seed{seed}"),
                     {"accuracy": acc, "resumed_at_epoch": 2 if system == "teacher_full" else 0})
    proc = run_script("bench_fewshot", "--notrain", "--systems=scratch,teacher_full",
                      "--shots=10,0", "--seeds=1,2", f"--output_dir={out}")
    result = json.load(open(out / "bench_fewshot.json"))
    scratch = result["results"]["scratch"]
    assert scratch["10"]["accuracies"] == [0.60, 0.66] and scratch["10"]["seeds"] == ["1", "2"]
    assert scratch["10"]["mean"] == pytest.approx(np.mean([0.60, 0.66]))
    assert scratch["10"]["std"] == pytest.approx(0.03)  # population std of two: half the gap
    assert scratch["0"]["accuracies"] == [0.88]  # "all" (K = 0) from its one finished seed
    assert result["results"]["teacher_full"] == {
        "10": {"accuracies": [0.81], "seeds": ["1"], "mean": 0.81, "std": 0.0}}
    # Nothing was trained: the three unfinished runs are named, not run.
    assert sorted(p.rsplit("/", 1)[-1] for p in result["missing_runs"]) == [
        "scratch_k0_seed2", "teacher_full_k0_seed1", "teacher_full_k0_seed2",
        "teacher_full_k10_seed2"]
    assert not (out / "teacher_full_k0_seed1").exists()
    assert (out / "bench_fewshot.png").stat().st_size > 1000
    assert "4 runs not finished" in proc.stderr
    # A run resumed after an interruption is not its uninterrupted twin: named, not hidden.
    assert result["resumed_runs"] == ["teacher_full_k10_seed1"]
    assert "runs resumed after an interruption: teacher_full_k10_seed1" in proc.stderr
