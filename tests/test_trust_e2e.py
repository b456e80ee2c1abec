"""--redact_pii and DP-SGD through scripts/train.py: counts and (epsilon, delta) in metrics.json."""
import json
import math
import os
import random

import pytest

from conftest import run_script, write_csv
from slm_tf.trust import dp


@pytest.mark.integration
def test_train_with_redaction_and_dp_sgd(tmp_path, data_dir):
    r = random.Random(0)
    rows = [(f"my card 4111 1111 1111 1111 is blocked {i}", "card") for i in range(40)] + \
        [(f"write to user{i}@EXAMPLE.COM about the transfer", "transfer") for i in range(40)] + \
        [(f"call me on +44 20 7946 {1000 + i} about cash", "cash") for i in range(40)]
    r.shuffle(rows)
    data = write_csv(tmp_path / "d.csv", rows)
    out = str(tmp_path / "run")
    run_script("train", f"--data={data}", f"--data_dir={data_dir}", f"--output_dir={out}",
               "--model=bow", "--embedding_dim=16", "--hidden_dim=16", "--max_seq_len=16",
               "--vocab_size=200", "--batch_size=16", "--epochs=2", "--redact_pii",
               "--dp_l2_clip=1.0", "--dp_noise_multiplier=1.1", "--early_stopping_patience=0")
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        m = json.load(f)
    assert m["data"]["pii_redacted"] == {"CARD": 40, "EMAIL": 40, "PHONE": 40}
    n = m["data"]["sizes"]["train"]
    steps = 2 * math.ceil(n / 16)
    assert m["dp"]["steps"] == steps and m["dp"]["delta"] == pytest.approx(1 / n)
    assert m["dp"]["epsilon"] == pytest.approx(dp.epsilon(1.1, 16 / n, steps, 1 / n))
    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    assert cfg["dp"]["dp_noise_multiplier"] == 1.1 and cfg["data"]["redact_pii"] is True
    vocab = open(os.path.join(out, "tokenizer", "vocab.txt"), encoding="utf-8").read().split()
    assert "4111" not in vocab and "example" not in vocab
