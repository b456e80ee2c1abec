"""Compression modes: which tfmot stages run, in which order, with which preserving schemes.

A mode is picked from the techniques the config turns on (prune, cluster, qat); combinations
are tfmot's collaborative pipelines: prune then prune-preserving QAT (PQAT), cluster then
cluster-preserving QAT (CQAT), prune then sparsity-preserving clustering, and all three
(PCQAT). Each stage wraps the model for tfmot, is fine-tuned by the caller, and is stripped
back to plain layers before the next one (QAT, always last, stays wrapped: that model is
what exports to int8).
"""
import dataclasses
import math
from typing import Callable, Dict, FrozenSet, List, Tuple

import tf_keras as keras

from slm_tf.compress import clustering, pruning, quantization
from slm_tf.compress.config import SPARSE_SOURCE, CompressConfig, check, techniques
from slm_tf.compress.report import layer_sparsity, overall_sparsity
from slm_tf.compress.rebuild import as_functional, rebuild_like
from slm_tf.registry import Registry


class Stage:
    """One fine-tuning stage. ``wrap`` -> (caller trains) -> ``finish``."""

    name = ""

    def __init__(self, cfg: CompressConfig, follows_another: bool, sample_ids=None):
        self.cfg = cfg
        self.follows_another = follows_another
        self.sample_ids = sample_ids  # a few training rows of token ids (QAT calibration)
        self.plan: Dict = {}

    def epochs(self, default: int) -> int:
        return default

    def learning_rate(self, default: float) -> float:
        return default

    def wrap(self, model: keras.Model, total_steps: int) -> keras.Model:
        raise NotImplementedError

    def callbacks(self, log_dir: str) -> list:
        return []

    def first_candidate_epoch(self, steps_per_epoch: int, total_steps: int) -> int:
        """Epochs before this one are not eligible as "best" (their masks are not final)."""
        return 0

    def finish(self, wrapped: keras.Model, template: keras.Model) -> keras.Model:
        """The trained model without tfmot training wrappers, as ``template``'s class."""
        raise NotImplementedError


class PruneStage(Stage):
    name = "prune"

    def wrap(self, model, total_steps):
        self.plan = {t.layer: t.describe() for t in pruning.plan(model, self.cfg)}
        return pruning.prune(model, self.cfg, total_steps)

    def callbacks(self, log_dir):
        return pruning.callbacks(log_dir)

    def first_candidate_epoch(self, steps_per_epoch, total_steps):
        # The last mask update runs in the batch at step `end`; the epoch holding it is the
        # first whose weights have the final sparsity.
        end = pruning.pruning_end_step(self.cfg, total_steps)
        return max(0, math.ceil((end + 1) / steps_per_epoch) - 1)

    def finish(self, wrapped, template):
        return rebuild_like(template, pruning.strip(wrapped))


def _already_sparse(cfg: CompressConfig, model: keras.Model) -> bool:
    """A pruned source (first stage) whose zeros the stage should keep."""
    return cfg.keep_sparsity and overall_sparsity(layer_sparsity(model)) >= SPARSE_SOURCE


class ClusterStage(Stage):
    name = "cluster"
    preserve_sparsity = False

    def wrap(self, model, total_steps):
        preserve = self.preserve_sparsity or (not self.follows_another and
                                              _already_sparse(self.cfg, model))
        self.plan = clustering.plan(model, self.cfg)
        return clustering.cluster(model, self.cfg, preserve)

    def callbacks(self, log_dir):
        return clustering.callbacks(log_dir)

    def finish(self, wrapped, template):
        return rebuild_like(template, clustering.strip(wrapped))


class SparseClusterStage(ClusterStage):
    preserve_sparsity = True


class QatStage(Stage):
    name = "qat"
    scheme = "default"

    def epochs(self, default):
        return (self.cfg.qat_epochs or default) if self.follows_another else default

    def learning_rate(self, default):
        return (self.cfg.qat_learning_rate or default) if self.follows_another else default

    def wrap(self, model, total_steps):
        float_model = as_functional(model)
        scheme = self.scheme
        if scheme == "default" and not self.follows_another and \
                _already_sparse(self.cfg, model):
            scheme = "prune_preserve"
        quantized = quantization.quantize(float_model, scheme)
        calibrated = 0
        if self.sample_ids is not None:
            calibrated = quantization.calibrate(quantized, float_model, self.sample_ids)
        self.plan = {"scheme": scheme,
                     "wrapped_layers": sum(quantization.float_layer(l) is not l
                                           for l in quantized.layers),
                     "calibrated_ranges": calibrated}
        return quantized

    def finish(self, wrapped, template):
        return wrapped  # the QAT graph is the deliverable: it converts to int8 as trained


class PruneQatStage(QatStage):
    scheme = "prune_preserve"


class ClusterQatStage(QatStage):
    scheme = "cluster_preserve"


class SparseClusterQatStage(QatStage):
    scheme = "sparse_cluster_preserve"


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    techniques: FrozenSet[str]
    stages: Tuple[Callable[..., Stage], ...]
    description: str


MODES: Registry[Mode] = Registry("compression mode")


def _mode(name: str, description: str, *stages) -> None:
    on = frozenset(s.name for s in stages)
    MODES.register(name)(Mode(name, on, stages, description))


_mode("prune", "magnitude pruning (unstructured and/or m:n)", PruneStage)
_mode("cluster", "weight clustering", ClusterStage)
_mode("qat", "quantization-aware training (int8)", QatStage)
_mode("pqat", "pruning, then prune-preserving QAT", PruneStage, PruneQatStage)
_mode("cqat", "clustering, then cluster-preserving QAT", ClusterStage, ClusterQatStage)
_mode("sparse_cluster", "pruning, then sparsity-preserving clustering", PruneStage,
      SparseClusterStage)
_mode("pcqat", "pruning, sparsity-preserving clustering, then sparsity- and "
      "cluster-preserving QAT", PruneStage, SparseClusterStage, SparseClusterQatStage)


def mode_for(cfg: CompressConfig) -> Mode:
    """The mode running exactly the techniques ``cfg`` turns on (UserError if none)."""
    check(cfg)
    on = frozenset(techniques(cfg))
    for name in MODES.names():
        if MODES.get(name).techniques == on:
            return MODES.get(name)
    raise AssertionError(f"no mode covers {sorted(on)}")  # every combination is registered


def stages_for(cfg: CompressConfig, sample_ids=None) -> List[Stage]:
    """Fresh stage objects for ``cfg``'s mode, in order."""
    return [make(cfg, i > 0, sample_ids) for i, make in enumerate(mode_for(cfg).stages)]


FitStage = Callable[[keras.Model, Stage, int], None]


def compress_model(model: keras.Model, cfg: CompressConfig, fit_stage: FitStage,
                   steps_per_epoch: int, epochs: int, sample_ids=None
                   ) -> Tuple[keras.Model, List[Stage]]:
    """Runs every stage of ``cfg``'s mode on ``model``.

    ``fit_stage(wrapped, stage, stage_epochs)`` trains the wrapped model (with
    ``stage.callbacks``); ``model`` (a zoo model) is the template the stripped result is
    rebuilt as; ``sample_ids`` (token-id rows of the training data) start QAT's activation
    ranges. Returns the compressed model and the stages (with their per-layer plans).
    ``model``'s own variables may be trained in place: measure it before.
    """
    current, done = model, []
    for stage in stages_for(cfg, sample_ids):
        stage_epochs = stage.epochs(epochs)
        wrapped = stage.wrap(current, steps_per_epoch * stage_epochs)
        fit_stage(wrapped, stage, stage_epochs)
        current = stage.finish(wrapped, model)
        done.append(stage)
    return current, done
