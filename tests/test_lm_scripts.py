"""train_lm.py / evaluate.py / generate.py end to end on a toy corpus, and resume after
SIGKILL."""
import json
import math
import os

import pytest

from conftest import finished_run, run_script, run_script_killed_at

pytestmark = pytest.mark.integration  # runs the real scripts end to end

TINY = ["--hidden_dim=32", "--num_layers=2", "--num_heads=2", "--ff_dim=64",
        "--max_seq_len=32", "--batch_size=16", "--learning_rate=5e-3"]
SLOW_MACHINE = 1200  # seconds per script: a shared 2-core machine under load
VERSES = ["the cat sat on the mat and the dog sat on the log.\n",
          "a bird in the hand is worth two in the bush.\n",
          "all that glitters is not gold; all that wanders is not lost.\n",
          "猫坐在垫子上，狗坐在木头上。\n"]


def _corpus(folder, n_docs=12):
    os.makedirs(folder, exist_ok=True)
    for i in range(n_docs):
        with open(os.path.join(folder, f"doc{i:02d}.txt"), "w", encoding="utf-8") as f:
            f.write("".join(VERSES[(i + j) % len(VERSES)] for j in range(40)))
    return str(folder)


def test_train_evaluate_generate_sentencepiece_gpt(tmp_path):
    data = _corpus(tmp_path / "corpus")
    out = str(tmp_path / "run")
    run_script("train_lm", f"--data={data}", f"--output_dir={out}", "--epochs=4",
               "--tokenizer=sentencepiece", "--vocab_size=400",
               "--test_data=doc00.txt,doc01.txt", "--validation_data=doc02.txt", *TINY, timeout=SLOW_MACHINE)
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["task"] == "lm" and m["epochs_run"] == 4
    # Far below a uniform guess over the vocabulary (the text repeats four lines).
    uniform = math.log2(m["tokenizer"]["vocab_size"]) * m["tokens"] / m["characters"]
    assert m["bits_per_character"] < 0.8 * uniform
    ev = run_script("evaluate", f"--run_dir={out}", f"--data={data}/doc03.txt")
    assert "bits/char" in ev.stdout
    report = json.load(open(os.path.join(out, "eval", "doc03.txt_all.json")))
    assert report["bits_per_character"] < 0.8 * uniform
    args = [f"--run_dir={out}", "--prompt=the cat", "--max_new_tokens=20", "--seed=3",
            "--temperature=1.0"]
    first, again = run_script("generate", *args), run_script("generate", *args)
    assert first.stdout.startswith("the cat") and len(first.stdout) > len("the cat\n")
    assert first.stdout == again.stdout
    # TensorFlow loads after the flags, so its start-up notices are filtered like train.py's.
    from test_cli import NOISE
    assert not [ln for ln in first.stderr.splitlines() if any(n in ln for n in NOISE)], \
        first.stderr


def test_lm_training_resumes_after_sigkill(tmp_path):
    data = _corpus(tmp_path / "corpus")
    out = str(tmp_path / "run")
    args = [f"--data={data}", f"--output_dir={out}", "--epochs=3",
            "--test_data=doc00.txt", "--validation_data=doc01.txt", *TINY]
    run_script_killed_at("train_lm", "slm_tf.train.trainer", 1, 3, *args, timeout=SLOW_MACHINE)
    assert not os.path.exists(os.path.join(out, "metrics.json"))
    run_script("train_lm", *args, timeout=SLOW_MACHINE)
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["resumed_at_epoch"] == 1 and m["epochs_run"] == 3 - 1



def test_bench_distill_scores_an_lm_student_in_bits_per_character(tmp_path):
    # Both arms of an LM teacher are complete runs linked in (as a pipeline's student/ and
    # distilled/ are): --reuse_complete keeps them, the summary is in bits per character.
    teacher = str(tmp_path / "teacher")
    finished_run(teacher, {"bits_per_character": 4.0, "num_params": 10000}, task="lm")
    out = tmp_path / "bench"
    arms = {"no_kd": [5.0, 4.0], "kd": [4.5, 4.2]}
    for arm, scores in arms.items():
        for seed, bpc in zip((7, 8), scores):
            finished_run(str(out / f"{arm}_seed{seed}"),
                         {"bits_per_character": bpc, "num_params": 2000,
                          "resumed_at_epoch": int(arm == "kd" and seed == 8)}, task="lm")
    proc = run_script("bench_distill", f"--teacher_dir={teacher}", "--seeds=7,8",
                      "--nocache_speed", "--reuse_complete", f"--output_dir={out}")
    result = json.load(open(out / "bench_distill.json"))
    # The one arm resumed after an interruption is named, in the JSON and as a warning.
    assert result["resumed_arms"] == ["kd_seed8"]
    assert "runs resumed after an interruption: kd_seed8" in proc.stderr
    assert result["metric"] == "bits_per_character" and not result["higher_is_better"]
    assert result["no_kd_bits_per_characters"] == [5.0, 4.0]
    assert result["kd_bits_per_character_mean"] == pytest.approx(4.35)
    assert result["kd_bits_per_character_std"] == pytest.approx(0.15)
    assert result["kd_relative_change"] == pytest.approx(4.35 / 4.5 - 1)
    assert result["kd_relative_change_per_seed"] == pytest.approx([-0.1, 0.05])
    assert result["best_student_bits_per_character"] == 4.2  # lower is better
    assert result["student_params_ratio"] == pytest.approx(0.2)
