"""The model repository: which versions of which models are loaded, and the watcher that
loads new version folders while the server runs (TF Serving's file-system source)."""
import dataclasses
import os
import threading
import time
from typing import Dict, List, Optional

from absl import logging

from slm_tf.errors import UserError
from slm_tf.serving.batcher import Batcher
from slm_tf.serving.config import ServeConfig
from slm_tf.serving.metrics import DriftMonitor, Metrics
from slm_tf.serving.predictors import MANIFEST, RUN_CONFIG, load_predictor

RUN_DONE = "metrics.json"  # the last file a training run writes (slm_tf.train.artifacts)


def is_complete(path: str) -> bool:
    """An export (its ``export.json`` is written last) or a finished run directory."""
    return os.path.isfile(os.path.join(path, MANIFEST)) or (
        os.path.isfile(os.path.join(path, RUN_CONFIG))
        and os.path.isfile(os.path.join(path, RUN_DONE)))


@dataclasses.dataclass
class Servable:
    """One loaded version: its predictor, batcher and drift monitor."""
    name: str
    version: int
    predictor: object
    batcher: Batcher
    drift: DriftMonitor


def parse_models(specs: List[str]) -> Dict[str, str]:
    """``["name=dir", ...]`` -> ``{name: dir}``; a bad spec raises a UserError with the fix."""
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--model={spec}: expected name=<export dir>, e.g. "
                            "--model=banking77=runs/quickstart/export")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise UserError(f"--model={spec}: a model name holds letters, digits, - and _ only")
        if name in models:
            raise UserError(f"--model={spec}: the name {name} is given twice")
        if not os.path.isdir(path):
            raise UserError(f"--model={spec}: {path} is not a directory")
        models[name] = path
    if not models:
        raise UserError("no model to serve: give --model=name=<export dir>")
    return models


def version_dirs(base: str) -> Dict[int, str]:
    """Complete versions under ``base``: ``<base>/<n>/`` holding an export (or a finished run,
    how language models are served), or ``base`` itself as version 1."""
    found = {}
    try:
        entries = os.listdir(base)
    except OSError:
        return found
    for entry in entries:
        path = os.path.join(base, entry)
        if entry.isdigit() and is_complete(path):
            found[int(entry)] = path
    if not found and is_complete(base):
        found[1] = base
    return found


class Repository:
    """Loads every version found at start and polls for new ones every ``poll_s``."""

    def __init__(self, cfg: ServeConfig, metrics: Metrics):
        self.cfg, self.metrics = cfg, metrics
        self.bases = parse_models(cfg.model)
        # name -> {version: Servable}; replaced whole (never mutated) so readers need no lock.
        self.models: Dict[str, Dict[int, Servable]] = {n: {} for n in self.bases}
        self._failed: Dict[str, float] = {}  # version dir -> mtime of its failed load
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.scan()
        empty = [n for n, v in self.models.items() if not v]
        if empty:
            raise UserError(f"no loadable export under {', '.join(self.bases[n] for n in empty)}"
                            ": each needs export.json (scripts/export.py) directly or in "
                            "numbered version folders <dir>/1/, <dir>/2/ ...")

    def _load(self, name: str, version: int, path: str) -> Servable:
        start = time.time()
        predictor = load_predictor(path, self.cfg.format)
        sizes, seconds = (self.metrics.batch_size.labels(name),
                          self.metrics.model_seconds.labels(name))

        def on_batch(n: int, took: float) -> None:
            sizes.observe(n)
            seconds.observe(took)
        batcher = Batcher(predictor, self.cfg.max_batch_size, self.cfg.batch_timeout_ms / 1000,
                          self.cfg.num_workers, on_batch=on_batch)
        drift = DriftMonitor(self.metrics, name, str(version), predictor.reference,
                             self.cfg.drift_window, self.cfg.drift_min_examples)
        logging.info("loaded model %s version %d (%s, %.1f s)", name, version, self.cfg.format,
                     time.time() - start)
        return Servable(name, version, predictor, batcher, drift)

    def scan(self) -> None:
        """Loads versions that appeared and unloads those whose folder is gone."""
        for name, base in self.bases.items():
            current = self.models[name]
            found = version_dirs(base)
            new = dict((v, s) for v, s in current.items() if v in found)
            for version in sorted(set(found) - set(current)):
                path = found[version]
                stamp = os.path.getmtime(path)
                if self._failed.get(path) == stamp:
                    continue  # retried only once it changes
                try:
                    new[version] = self._load(name, version, path)
                except Exception as e:  # noqa: BLE001 - a bad drop-in must not stop serving
                    self._failed[path] = stamp
                    logging.error("model %s version %d not loaded: %s", name, version,
                                  str(e).splitlines()[0] if str(e) else type(e).__name__)
            gone = [s for v, s in current.items() if v not in new]
            self.models = {**self.models, name: new}  # the switch: one reference assignment
            self.metrics.versions.labels(name).set(len(new))
            for s in gone:
                logging.info("unloaded model %s version %d", name, s.version)
                s.batcher.close()  # its queued requests finish first

    def get(self, name: str, version: Optional[int] = None) -> Optional[Servable]:
        """The pinned ``version``, or the newest one; None when unknown."""
        versions = self.models.get(name)
        if not versions:
            return None
        if version is None:
            return versions[max(versions)]
        return versions.get(version)

    def start_polling(self) -> None:
        """Starts the version watcher thread."""
        def loop():
            while not self._stop.wait(self.cfg.poll_s):
                self.scan()
        self._thread = threading.Thread(target=loop, daemon=True, name="version-watcher")
        self._thread.start()

    def close(self) -> None:
        """Stops the watcher and every batcher (queued requests finish first)."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        for versions in self.models.values():
            for s in versions.values():
                s.batcher.close()
