"""Prometheus metrics of the server and the drift monitor that feeds its PSI gauges."""
import collections
import threading
import time
from typing import Dict, List, Optional

import numpy as np
from absl import logging
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from slm_tf.serving.drift import WARN_PSI, confidence_bin, psi

_LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_LENGTH_BUCKETS = (10, 25, 50, 100, 250, 500, 1000, 2500, 10000)
_CONFIDENCE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


class Metrics:
    """All series live in a registry of their own, so several apps can share a process."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("slm_requests", "HTTP requests by route and status code.",
                                ["route", "code"], registry=r)
        self.latency = Histogram("slm_request_seconds", "Request latency by route.", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.model_seconds = Histogram("slm_batch_seconds", "Time of one batch in the model "
                                       "(tokenizing + inference + postprocessing).", ["model"],
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_wait = Histogram("slm_predict_wait_seconds", "From queueing a request's "
                                    "texts to its predictions (batch wait + its batch).",
                                    ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("slm_batch_size", "Texts per model batch.", ["model"],
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.input_chars = Histogram("slm_input_chars", "Characters per text.", ["model"],
                                     buckets=_LENGTH_BUCKETS, registry=r)
        self.labels = Counter("slm_predicted_label", "Predictions by label.",
                              ["model", "version", "label"], registry=r)
        self.confidence = Histogram("slm_confidence", "Top probability of each prediction.",
                                    ["model"], buckets=_CONFIDENCE_BUCKETS, registry=r)
        self.abstained = Counter("slm_abstained", "Predictions of an export with an "
                                 "abstention rule, by whether it abstained.",
                                 ["model", "version", "abstained"], registry=r)
        self.psi = Gauge("slm_drift_psi", "Population stability index of live predictions "
                         "against the export's test-split reference.",
                         ["model", "version", "distribution"], registry=r)
        self.generated = Counter("slm_generated_events", "Token events streamed by :generate.",
                                 ["model"], registry=r)
        self.versions = Gauge("slm_model_versions_loaded", "Versions being served.", ["model"],
                              registry=r)


def record_predictions(metrics: Metrics, model: str, version: str, preds: List[Dict]) -> None:
    """Counts a batch of classifier predictions: label, confidence and, when the export
    carries an abstention rule, whether each one abstained."""
    for p in preds:
        metrics.labels.labels(model, version, p["label"]).inc()
        metrics.confidence.labels(model).observe(p["confidence"])
        if "abstained" in p:
            metrics.abstained.labels(model, version, str(bool(p["abstained"])).lower()).inc()


class DriftMonitor:
    """PSI of the latest ``window`` predictions of one model version against its reference.

    Counts are updated per prediction; the PSI itself (two numpy passes over the bins, about
    0.1 ms) is computed when /metrics is scraped and at most every ``every_s`` while serving
    (for the warning), not on every request.
    """

    def __init__(self, metrics: Metrics, model: str, version: str, reference: Optional[Dict],
                 window: int, min_examples: int, every_s: float = 1.0):
        self.metrics, self.model, self.version = metrics, model, version
        self.reference = reference
        self.min_examples = min_examples
        self.every_s = every_s
        self._recent: collections.deque = collections.deque(maxlen=window)
        self._lock = threading.Lock()
        self._warned = set()
        self._labels = self._conf = None  # counts over the window, made on first use
        self._last = 0.0  # monotonic time of the last PSI computation
        self._gauges = False

    def observe(self, predictions: List[Dict]) -> Dict[str, float]:
        """Adds predictions; recomputes the PSI (gauges, warning) when it is due."""
        if not self.reference:
            return {}
        with self._lock:
            if self._labels is None:
                self._labels = np.zeros(len(self.reference["label_counts"]), np.int64)
                self._conf = np.zeros(len(self.reference["confidence_counts"]), np.int64)
            # Counts kept up to date one prediction at a time (was: recounted over the whole
            # window on every request, about 1 ms of CPU per request at window 1000).
            for p in predictions:
                if len(self._recent) == self._recent.maxlen:
                    k, b = self._recent.popleft()
                    self._labels[k] -= 1
                    self._conf[b] -= 1
                k, b = p["label_id"], confidence_bin(p["confidence"])
                self._recent.append((k, b))
                self._labels[k] += 1
                self._conf[b] += 1
            if len(self._recent) < self.min_examples:
                return {}
            if not self._gauges:  # from now on every scrape reads a fresh value
                self._gauges = True
                for kind in ("label", "confidence"):
                    self.metrics.psi.labels(self.model, self.version, kind).set_function(
                        lambda kind=kind: self.compute()[kind])
            if time.monotonic() - self._last < self.every_s:
                return {}
        return self.compute()

    def compute(self) -> Dict[str, float]:
        """PSI of labels and confidences now; warns once per crossing of 0.2."""
        with self._lock:
            self._last = time.monotonic()
            labels, conf, n = self._labels.copy(), self._conf.copy(), len(self._recent)
        values = {"label": psi(self.reference["label_counts"], labels),
                  "confidence": psi(self.reference["confidence_counts"], conf)}
        for kind, value in values.items():
            if value > WARN_PSI and kind not in self._warned:
                self._warned.add(kind)
                logging.warning("drift: model %s version %s %s PSI %.3f > %.1f over the last "
                                "%d predictions", self.model, self.version, kind, value,
                                WARN_PSI, n)
            elif value <= WARN_PSI:
                self._warned.discard(kind)
        return values
