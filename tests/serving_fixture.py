"""A tiny trained classifier, exported with the real export step, and helpers that start
scripts/serve.py on a free loopback port (shared by the serving tests)."""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from conftest import REPO, write_csv

GROUPS = {"card_lost": ["card", "lost", "stolen", "pin", "blocked", "missing"],
          "exchange_rate": ["rate", "exchange", "euro", "dollar", "currency", "convert"],
          "refund": ["refund", "money", "back", "return", "charge", "wrong"]}


def rows(n, seed=0):
    """``n`` (text, label) rows whose words come from their label's own group."""
    rng = random.Random(seed)
    labels = sorted(GROUPS)
    out = []
    for i in range(n):
        label = labels[i % 3]
        out.append((" ".join(rng.choice(GROUPS[label]) for _ in range(rng.randint(2, 7))),
                    label))
    return out


def make_export(root, data_dir):
    """Trains a bag-of-words model for a few seconds and exports it (tflite_float, android
    bundle, reference.json); returns (export dir, data config dict)."""
    import numpy as np

    from slm_tf.data.config import DataConfig
    from slm_tf.export.run import ExportConfig, export_run
    from slm_tf.io_utils import write_json
    from slm_tf.models import ModelConfig, build_model
    from slm_tf.tokenizers import TokenizerConfig, build_tokenizer
    from slm_tf.train import artifacts
    from slm_tf.train.trainer import ExperimentConfig, TrainConfig
    import tf_keras as keras

    run_dir = os.path.join(root, "run")
    os.makedirs(run_dir)
    data = rows(240)
    csv = write_csv(os.path.join(root, "train.csv"), data)
    exp = ExperimentConfig(DataConfig(data=csv, data_dir=data_dir, max_seq_len=8),
                           TokenizerConfig(min_frequency=1),
                           ModelConfig(model="bow", embedding_dim=16, hidden_dim=16),
                           TrainConfig(output_dir=run_dir, epochs=1))
    tokenizer = build_tokenizer(exp.tokenizer, [t for t, _ in data])
    tokenizer.save(os.path.join(run_dir, artifacts.TOKENIZER_DIR))
    labels = sorted(GROUPS)
    keras.utils.set_random_seed(0)  # unseeded, a rare run confused "card stolen" with a rate
    model = build_model(exp.model, tokenizer.vocab_size, len(labels), 8)
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(tokenizer.encode([t for t, _ in data], 8),
              np.asarray([labels.index(y) for _, y in data]), epochs=30, verbose=0)
    artifacts.save_model(run_dir, model, tokenizer, 8)
    artifacts.save_labels(run_dir, labels)
    write_json(os.path.join(run_dir, artifacts.CONFIG_FILE), exp.to_dict())
    write_json(os.path.join(run_dir, artifacts.METRICS_FILE), {"accuracy": 1.0})
    out = os.path.join(root, "export")
    export_run(ExportConfig(run_dir=run_dir, formats=["tflite_float"], output_dir=out,
                            dynamic_batch=True))
    return out, exp.to_dict()["data"]


def free_port():
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """scripts/serve.py in a subprocess on 127.0.0.1; ``stop()`` sends SIGTERM."""

    def __init__(self, *args, timeout=120):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=REPO)
        # A file, not a pipe: a full pipe would block the server's logging.
        self.log = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "scripts", "serve.py"), f"--port={self.port}",
             *args], cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: "
                                     f"{self.output()[-3000:]}")
            try:
                if call(self.url + "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError("server not ready in time")

    def output(self):
        """Everything the server logged so far."""
        self.log.seek(0)
        return self.log.read()

    def stop(self, timeout=60):
        """SIGTERM, wait; returns (exit code, log)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode, self.output()


def call(url, body=None, headers=None, method=None, timeout=30):
    """(status, parsed JSON or raw text) of one HTTP request with urllib."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status = r.read().decode(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read().decode(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


# --- NER and LM servables --------------------------------------------------------------------
NER_NAMES = ["Ann", "Bob", "Carla", "Dmitri", "Eve", "Farid"]
NER_CITIES = ["Paris", "Lima", "Oslo", "Quito", "Rome", "Seoul"]
NER_FILLER = ["today", "again", "briefly", "yesterday"]


def ner_sentence(rng):
    """``(text, [(start, end, type)])``: "I met <name> in <city> <filler> ." with the entities'
    character offsets counted while the text is built."""
    name, city = rng.choice(NER_NAMES), rng.choice(NER_CITIES)
    text = "I met "
    spans = [(len(text), len(text) + len(name), "PER")]
    text += name + " in "
    spans.append((len(text), len(text) + len(city), "LOC"))
    text += f"{city} {rng.choice(NER_FILLER)} ."
    return text, spans


def make_ner_export(root, data_dir):
    """A word-level CNN tagger trained for a few seconds on :func:`ner_sentence` text and
    exported (tflite_float, android bundle) with the real export step; returns the export
    dir."""
    import numpy as np
    import tf_keras as keras

    from slm_tf.data.config import DataConfig
    from slm_tf.export.run import ExportConfig, export_run
    from slm_tf.io_utils import write_json
    from slm_tf.models import ModelConfig, build_tagger
    from slm_tf.ner import offsets
    from slm_tf.ner.schemes import Span
    from slm_tf.ner.training import TokenCrossEntropy
    from slm_tf.tokenizers import TokenizerConfig, build_tokenizer
    from slm_tf.train import artifacts
    from slm_tf.train.trainer import ExperimentConfig, TrainConfig

    rng = random.Random(0)
    data = [ner_sentence(rng) for _ in range(200)]
    path = os.path.join(root, "ner.txt")  # CoNLL, so config.json names a real data file
    with open(path, "w", encoding="utf-8") as f:
        for text, spans in data:
            for word in text.split(" "):
                tag = "O"
                for a, b, t in spans:
                    if text[a:b] == word:
                        tag = f"B-{t}"
                f.write(f"{word}\t{tag}\n")
            f.write("\n")
    run_dir = os.path.join(root, "ner_run")
    os.makedirs(run_dir)
    length, tags = 12, ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    exp = ExperimentConfig(DataConfig(data=path, data_dir=data_dir, max_seq_len=length),
                           TokenizerConfig(min_frequency=1),
                           ModelConfig(model="cnn", embedding_dim=16, hidden_dim=0,
                                       num_filters=16, kernel_sizes=["3"]),
                           TrainConfig(output_dir=run_dir, epochs=1, task="ner"))
    tokenizer = build_tokenizer(exp.tokenizer, [t for t, _ in data])
    tokenizer.save(os.path.join(run_dir, artifacts.TOKENIZER_DIR))
    aligned = [offsets.align(tokenizer, t) for t, _ in data]
    ids = np.stack([offsets.encode_ids(tokenizer, a, length) for a in aligned])
    targets = np.stack([offsets.encode_targets(a, [Span(*s) for s in spans], "BIO",
                                               {t: i for i, t in enumerate(tags)}, length)
                        for a, (_, spans) in zip(aligned, data)])
    keras.utils.set_random_seed(0)
    model = build_tagger(exp.model, tokenizer.vocab_size, len(tags), length)
    model.compile(keras.optimizers.Adam(0.02), TokenCrossEntropy())
    model.fit(ids, targets, epochs=20, batch_size=32, verbose=0)
    artifacts.save_model(run_dir, model, tokenizer, length)
    artifacts.save_labels(run_dir, tags)
    write_json(os.path.join(run_dir, artifacts.CONFIG_FILE), exp.to_dict())
    write_json(os.path.join(run_dir, artifacts.METRICS_FILE), {"entity_f1": 1.0})
    out = os.path.join(root, "ner_export")
    # The static batch-1 file only: the server runs a batch row by row (the classification
    # fixture covers the dynamic-batch file).
    export_run(ExportConfig(run_dir=run_dir, formats=["tflite_float"], output_dir=out))
    return out


LM_TEXT = "the cat sat on the mat.\nthe dog sat on the log.\na bird in the hand.\n"


def make_lm_run(root, data_dir, seed=2):
    """An untrained character GPT (context 24) saved as a ``--task=lm`` run (model.keras,
    tokenizer/, config.json, metrics.json: what the server reads; no SavedModel); returns
    (run dir, the Keras model, its tokenizer) so tests can compare with in-process
    generation."""
    import tf_keras as keras

    from slm_tf.data.config import DataConfig
    from slm_tf.io_utils import write_json
    from slm_tf.models import ModelConfig, build_model
    from slm_tf.tokenizers import TOKENIZERS, TokenizerConfig
    from slm_tf.train import artifacts
    from slm_tf.train.trainer import ExperimentConfig, TrainConfig

    run_dir = os.path.join(root, "lm_run")
    os.makedirs(run_dir)
    corpus = os.path.join(root, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write(LM_TEXT)
    tok = TOKENIZERS.get("char_exact").learn([LM_TEXT], 100)
    exp = ExperimentConfig(DataConfig(data=corpus, data_dir=data_dir, max_seq_len=24),
                           TokenizerConfig(tokenizer="char_exact"),
                           ModelConfig(model="gpt", hidden_dim=32, embedding_dim=16,
                                       num_layers=2, num_heads=4, ff_dim=64, dropout=0.0),
                           TrainConfig(output_dir=run_dir, epochs=1, task="lm"))
    keras.utils.set_random_seed(seed)
    model = build_model(exp.model, tok.vocab_size, tok.vocab_size, 24)
    tok.save(os.path.join(run_dir, artifacts.TOKENIZER_DIR))
    model.save(os.path.join(run_dir, artifacts.MODEL_FILE))  # what the server reads
    write_json(os.path.join(run_dir, artifacts.CONFIG_FILE), exp.to_dict())
    write_json(os.path.join(run_dir, artifacts.METRICS_FILE), {"bits_per_character": 0.0})
    return run_dir, model, tok


def make_lm_export(run_dir, model, tok, out):
    """Exports the :func:`make_lm_run` run with the LM exporter: ``model_float.tflite``
    (prefill/decode, also the Android bundle's file), the SavedModel of the step functions and
    ``export.json``; returns ``out``. (The exporter is called directly: ``export_run`` would
    first want the run's classification-style SavedModel, which costs more than the export.)"""
    from slm_tf.export.lm import export_lm
    from slm_tf.export.run import MANIFEST, ExportConfig
    from slm_tf.io_utils import read_json, write_json
    from slm_tf.train import artifacts
    run = artifacts.Run(run_dir, model, tok, [],
                        read_json(os.path.join(run_dir, artifacts.CONFIG_FILE)))
    os.makedirs(out)
    manifest = export_lm(run, ExportConfig(run_dir=run_dir, output_dir=out,
                                           formats=["tflite_float", "saved_model"]), out)
    write_json(os.path.join(out, MANIFEST), manifest)
    return out
