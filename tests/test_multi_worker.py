"""Real two-worker training: two processes of scripts/train.py on loopback, one TF_CONFIG each,
under --strategy=multi_worker (tf.distribute.MultiWorkerMirroredStrategy)."""
import csv
import json
import math
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import _KILL_AT_BATCH, REPO
from test_end_to_end import TINY, _banking_subset

pytestmark = pytest.mark.integration  # training processes end to end

EPOCHS = 4
STEPS_LINE = re.compile(r"worker (\d+) of (\d+): (\d+) training batches in this process, "
                        r"optimizer at step (\d+)")
TIMEOUT = 240  # a collective op waits forever for a dead peer: nothing here may


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _start(index, ports, args, kill_at=None, script="train"):
    env = dict(os.environ, TF_CONFIG=json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": index}}))
    script = os.path.join(REPO, "scripts", f"{script}.py")
    cmd = [sys.executable, script, *args] if kill_at is None else \
        [sys.executable, "-c", _KILL_AT_BATCH, "slm_tf.train.trainer", str(kill_at[0]),
         str(kill_at[1]), script, *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(procs, timeout=TIMEOUT):
    """``[(returncode, stderr)]`` of each process; one still running after ``timeout`` is
    SIGKILLed (returncode -9)."""
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        out.append((p.returncode, err))
        timeout = 30  # the others have had their time while we waited for the first
    return out


def _kill_all(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()


def _assert_all_ok(results):
    failed = [f"worker {i} exited {code}\n{err[-3000:]}"
              for i, (code, err) in enumerate(results) if code != 0]
    assert not failed, "\n".join(failed)


LOSS_LINE = re.compile(r"worker (\d+) of (\d+): training loss per epoch (\[.*\])")


def _losses(stderr):
    found = LOSS_LINE.findall(stderr)
    assert len(found) == 1, stderr[-3000:]
    return json.loads(found[0][2])


def _steps(stderr):
    found = STEPS_LINE.findall(stderr)
    assert len(found) == 1, stderr[-3000:]
    return tuple(int(x) for x in found[0])


def test_two_workers_train_shard_and_resume(tmp_path, data_dir):
    from slm_tf.train.artifacts import load_run
    data = _banking_subset(tmp_path / "intents.csv", bad_row=False)  # 8 intents x 60
    out = str(tmp_path / "run")
    args = [f"--data={data}", "--text_column=utterance", "--label_column=intent",
            f"--data_dir={data_dir}", f"--output_dir={out}", f"--epochs={EPOCHS}",
            "--early_stopping_patience=0", "--strategy=multi_worker", *TINY]
    procs = []
    try:
        ports = _free_ports(2)
        procs = [_start(i, ports, args) for i in range(2)]
        results = _finish(procs)
        _assert_all_ok(results)
        steps = [_steps(err) for _, err in results]
        m = json.load(open(os.path.join(out, "metrics.json")))
        # Both workers stepped together through every global batch of 32: ceil(train / 32)
        # per epoch, from the train split size the chief reports.
        n_train = m["data"]["sizes"]["train"]
        expected = EPOCHS * math.ceil(n_train / 32)
        assert steps == [(0, 2, expected, expected), (1, 2, expected, expected)], steps
        assert m["workers"] == {"count": 2, "index": 0, "chief": True,
                                "train_batches": expected}
        assert m["epochs_run"] == EPOCHS and m["resumed_at_epoch"] == 0
        # Only the chief wrote artifacts; the other worker's scratch dir is gone.
        names = set(os.listdir(out))
        assert {"model.keras", "metrics.json", "config.json", "tokenizer", "logs"} <= names
        assert not [n for n in names if n.startswith(".worker")], names
        # The result loads and predicts: well above chance (1/8) on rows of its data.
        run = load_run(out)
        with open(data, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))[:160]
        logits = run.model(run.tokenizer.encode([r["utterance"] for r in rows], 24)).numpy()
        predicted = [run.label_names[i] for i in logits.argmax(axis=1)]
        assert np.mean([p == r["intent"] for p, r in zip(predicted, rows)]) > 0.4

        # Worker 1 is SIGKILLed mid-epoch 3 (index 2); the chief then fails or hangs in a
        # collective and is killed after the timeout. Restarting both resumes from the backup
        # written at the end of epoch 2.
        out2 = str(tmp_path / "killed")
        args2 = [a if not a.startswith("--output_dir") else f"--output_dir={out2}"
                 for a in args]
        ports = _free_ports(2)
        procs = [_start(0, ports, args2), _start(1, ports, args2, kill_at=(2, 3))]
        started = time.monotonic()
        results = _finish(procs[1:] + procs[:1], timeout=TIMEOUT)
        chief_after_kill = (results[1][0], round(time.monotonic() - started))
        assert results[0][0] == -signal.SIGKILL, results[0][1][-3000:]
        assert results[1][0] != 0  # the chief cannot finish without its peer
        assert not os.path.exists(os.path.join(out2, "metrics.json"))
        ports = _free_ports(2)
        procs = [_start(i, ports, args2) for i in range(2)]
        results = _finish(procs)
        _assert_all_ok(results)
        m2 = json.load(open(os.path.join(out2, "metrics.json")))
        steps2 = [_steps(err) for _, err in results]
        per_epoch = math.ceil(m2["data"]["sizes"]["train"] / 32)
        assert m2["resumed_at_epoch"] == 2, m2["resumed_at_epoch"]
        # After the restart each worker ran the remaining two epochs, in step.
        assert steps2 == [(0, 2, 2 * per_epoch, EPOCHS * per_epoch),
                          (1, 2, 2 * per_epoch, EPOCHS * per_epoch)], steps2
        assert not [n for n in os.listdir(out2) if n.startswith(".worker")]
        print("per-worker steps:", steps, "after resume:", steps2,
              "resumed_at_epoch:", m2["resumed_at_epoch"],
              "chief exit code and seconds after the kill:", chief_after_kill)
    finally:
        _kill_all(procs)


def test_two_workers_distill_like_one_worker_on_the_global_batch(tmp_path):
    """distill.py across two workers: both step through every global batch, the chief alone
    writes the teacher cache and the student run, and the training loss equals that of one
    process distilling with the same global batch (same seed, so the same initial student and
    batch order): each replica's loss share is divided by the global count, so nothing is
    scaled by the number of replicas."""
    from tiny_run import make_run
    teacher = str(tmp_path / "teacher")
    data = make_run(teacher, str(tmp_path / "tfds0"), rows=240)  # untrained bow, 3 labels
    batch = 32
    args = [f"--teacher_dir={teacher}", f"--data={data}", "--epochs=1", "--dropout=0",
            "--alpha=0.5", "--temperature=2", "--model=bow", "--embedding_dim=8",
            "--hidden_dim=8", "--max_seq_len=8", f"--batch_size={batch}",
            "--learning_rate=1e-2", "--nocalibrate", "--nobaseline", "--min_frequency=1"]
    out, one = str(tmp_path / "student"), str(tmp_path / "one")
    data_dir = str(tmp_path / "tfds")  # the cluster's own: its teacher caches are counted
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = []
    try:
        ports = _free_ports(2)
        procs = [_start(i, ports, [*args, f"--output_dir={out}", f"--data_dir={data_dir}",
                                   "--strategy=multi_worker"], script="distill")
                 for i in range(2)]
        # The one-process reference runs beside the cluster, on its own data dir.
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(REPO, "scripts", "distill.py"), *args,
             f"--output_dir={one}", f"--data_dir={tmp_path / 'tfds1'}"], cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = _finish(procs, timeout=2 * TIMEOUT)
        _assert_all_ok(results)
    finally:
        _kill_all(procs)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = json.load(open(os.path.join(out, "metrics.json")))
    per_epoch = math.ceil(m["data"]["sizes"]["train"] / batch)
    steps = [_steps(err) for _, err in results[:2]]
    assert steps == [(0, 2, per_epoch, per_epoch), (1, 2, per_epoch, per_epoch)], steps
    assert m["workers"]["count"] == 2 and m["workers"]["chief"]
    # The chief wrote a complete student run, the worker nothing (its scratch dir is gone).
    names = set(os.listdir(out))
    assert {"model.keras", "metrics.json", "config.json", "tokenizer", "labels.json",
            "saved_model", "logs"} <= names, names
    assert not [n for n in names if n.startswith(".")], names
    # One teacher cache for the training split, computed and written by the chief; the other
    # worker waited for it and read it.
    caches = [n for n in os.listdir(os.path.join(data_dir, "teacher_cache"))
              if n.startswith("train-train-") and n.endswith(".tfrecord")]
    assert len(caches) == 1, caches
    assert "computing" in results[0][1] and "computing" not in results[1][1]
    assert "reusing the cache" in results[1][1]
    both, alone = _losses(results[0][1]), _losses(results[2][1])
    assert both == _losses(results[1][1]) and len(alone) == 1
    np.testing.assert_allclose(both, alone, rtol=2e-4)
    m1 = json.load(open(os.path.join(one, "metrics.json")))
    assert m["accuracy"] == pytest.approx(m1["accuracy"], abs=1e-6)
    print("two-worker training loss:", both, "one worker:", alone, "steps:", steps,
          "CPU seconds of the three processes:",
          round(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, 1))
