"""``CompressConfig``: what to compress and how, mirrored 1:1 by the flags of compress.py.

Fine-tuning itself (epochs, learning rate, seed, output directory) is a
:class:`slm_tf.train.config.TrainConfig` with :data:`FINETUNE_DEFAULTS`, so every flag of
train.py that makes sense for fine-tuning means the same thing here.
"""
import dataclasses
import fnmatch
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

from slm_tf.config import field, fraction, non_negative, positive
from slm_tf.distill.config import KD_ALPHA, KD_TEMPERATURE
from slm_tf.errors import UserError

PRUNE_SCHEDULES = ("constant", "polynomial")
CLUSTER_INITS = ("kmeans_plus_plus", "density_based", "linear")
SPARSE_SOURCE = 0.3  # share of zero kernel weights from which a source counts as pruned
CALIBRATION_ROWS = 1024  # training rows QAT calibrates its activation ranges on
_M_BY_N = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")

# Fine-tuning a trained model wants a gentler recipe than training from scratch: no warmup (the
# weights are already good), a few epochs, a lower peak rate, and no early stop (the best
# epoch is only meaningful once the final sparsity is reached).
FINETUNE_DEFAULTS = {"epochs": 4, "learning_rate": 5e-4, "warmup_fraction": 0.0,
                     "early_stopping_patience": 0}


def _structured_ok(value: str) -> bool:
    return value == "" or parse_m_by_n(value, strict=False) is not None


@dataclasses.dataclass
class CompressConfig:
    run_dir: str = field("", "A finished run (the --output_dir of train.py or distill.py) to "
                         "compress.", validate=bool, rule="set (e.g. --run_dir=runs/student)")
    prune: float = field(0.0, "Magnitude pruning: target share of zero weights in every "
                         "prunable kernel and embedding table (0 = no unstructured pruning).",
                         validate=fraction, rule="in [0, 1)")
    prune_schedule: str = field("polynomial", "constant: prune to the target at once; "
                                "polynomial: grow sparsity from --initial_sparsity to the "
                                "target over the first --prune_end of the steps.",
                                choices=PRUNE_SCHEDULES)
    initial_sparsity: float = field(0.0, "Polynomial schedule: sparsity at the first step.",
                                    validate=fraction, rule="in [0, 1)")
    prune_end: float = field(0.6, "Polynomial schedule: share of the pruning stage's steps "
                             "after which the target sparsity is reached (the remaining steps "
                             "fine-tune with fixed masks).", validate=lambda x: 0.0 < x <= 1.0,
                             rule="in (0, 1]")
    prune_frequency: int = field(50, "Recompute the pruning masks every N steps.",
                                 validate=positive, rule="> 0")
    structured: str = field("", "m:n structured sparsity (e.g. 2:4: two zeros in every four "
                            "consecutive input weights) for the matmul kernels of Dense, "
                            "Conv1D, attention and recurrent layers. Embedding tables, where "
                            "the pattern buys no speed, take --prune instead.",
                            validate=_structured_ok, rule="empty or m:n with 0 < m < n")
    layer_sparsity: list = field([], "Per-layer pruning overrides 'pattern:value' (shell-style "
                                 "pattern on layer names): a sparsity in [0, 1) (0 = keep the "
                                 "layer dense) or m:n. E.g. logits:0,conv*:0.5")
    qat: bool = field(False, "Quantization-aware training (int8 weights and activations) as "
                      "the last stage; the result exports to an int8 TFLite model without "
                      "calibration data.")
    cluster: int = field(0, "Weight clustering: unique values per weight tensor (0 = off).",
                         validate=lambda n: n == 0 or n >= 3, rule="0 or >= 3")
    cluster_init: str = field("kmeans_plus_plus", "How cluster centroids start.",
                              choices=CLUSTER_INITS)
    layer_clusters: list = field([], "Per-layer clustering overrides 'pattern:N' (0 = leave "
                                 "that layer unclustered). E.g. token_embedding:32")
    keep_sparsity: bool = field(True, "When the source model is already sparse (a pruned run, "
                                ">= 30% zeros in its kernels), QAT and clustering keep its zeros "
                                "(prune-preserving schemes) even without --prune.")
    qat_epochs: int = field(0, "Epochs of the QAT stage when it follows pruning or clustering "
                            "(0 = --epochs).", validate=non_negative, rule=">= 0")
    qat_learning_rate: float = field(0.0, "Peak learning rate of the QAT stage when it follows "
                                     "pruning or clustering (0 = --learning_rate).",
                                     validate=non_negative, rule=">= 0")
    teacher_dir: str = field("", "Keep distilling from this teacher run while compressing "
                             "(its outputs are cached as in distill.py; the transfer set is the "
                             "compressed run's own when it was distilled).")
    temperature: float = field(0.0, f"KD temperature (0 = the distilled run's own, else "
                               f"{KD_TEMPERATURE:g}).",
                               validate=non_negative, rule=">= 0")
    alpha: float = field(-1.0, "KD weight of the hard-label term (-1 = the distilled run's "
                         f"own, else {KD_ALPHA:g}).", validate=lambda a: a == -1.0 or 0.0 <= a <= 1.0,
                         rule="-1 or in [0, 1]")
    steps_per_epoch: int = field(0, "Cap each fine-tuning epoch at this many steps (0 = the "
                                 "whole training split; e.g. a short compression of a language "
                                 "model whose epoch is a pass over the corpus).",
                                 validate=non_negative, rule=">= 0")
    report_tflite: bool = field(True, "Also convert before/after models to TFLite to report "
                                "their sizes in compression.json (float before; float after, "
                                "or int8 after QAT).")


def parse_m_by_n(value: str, strict: bool = True) -> Optional[Tuple[int, int]]:
    """``"2:4"`` -> ``(2, 4)`` (m zeros in every n). Invalid: UserError (or None if not strict)."""
    match = _M_BY_N.match(value or "")
    if match and 0 < int(match.group(1)) < int(match.group(2)):
        return int(match.group(1)), int(match.group(2))
    if strict:
        raise UserError(f"{value!r} is not an m:n sparsity pattern; write e.g. 2:4 (m zeros "
                        "in every n consecutive weights, 0 < m < n)")
    return None


Sparsity = Union[float, Tuple[int, int]]


def _split_rule(rule: str, flag: str) -> Tuple[str, str]:
    pattern, sep, value = rule.rpartition(":")
    if rule.count(":") == 2:  # "pattern:m:n"
        pattern, _, first = pattern.rpartition(":")
        value = f"{first}:{value}"
    if not sep or not pattern.strip():
        raise UserError(f"--{flag}: {rule!r} must be 'layer_pattern:value', e.g. logits:0")
    return pattern.strip(), value.strip()


def parse_layer_sparsity(rules: Sequence[str]) -> List[Tuple[str, Sparsity]]:
    """``["logits:0", "conv*:2:4"]`` -> ``[("logits", 0.0), ("conv*", (2, 4))]``."""
    out = []
    for rule in rules:
        pattern, value = _split_rule(rule, "layer_sparsity")
        if ":" in value:
            out.append((pattern, parse_m_by_n(value)))
            continue
        try:
            sparsity = float(value)
        except ValueError:
            raise UserError(f"--layer_sparsity: {rule!r}: {value!r} is neither a sparsity in "
                            "[0, 1) nor m:n") from None
        if not 0.0 <= sparsity < 1.0:
            raise UserError(f"--layer_sparsity: {rule!r}: sparsity must be in [0, 1)")
        out.append((pattern, sparsity))
    return out


def parse_layer_clusters(rules: Sequence[str]) -> List[Tuple[str, int]]:
    """``["token_embedding:32", "logits:0"]`` -> ``[("token_embedding", 32), ("logits", 0)]``."""
    out = []
    for rule in rules:
        pattern, value = _split_rule(rule, "layer_clusters")
        if not value.isdigit() or int(value) in (1, 2):
            raise UserError(f"--layer_clusters: {rule!r}: the number of clusters must be 0 "
                            "(skip the layer) or an integer >= 3")
        out.append((pattern, int(value)))
    return out


def match_override(layer_name: str, rules: Sequence[Tuple[str, object]]):
    """The value of the last rule whose pattern matches ``layer_name`` (None if none does)."""
    found = None
    for pattern, value in rules:
        if fnmatch.fnmatchcase(layer_name, pattern):
            found = value
    return found


def techniques(cfg: CompressConfig) -> Tuple[str, ...]:
    """Which of prune / cluster / qat the config turns on, in pipeline order."""
    sparsity_rules = parse_layer_sparsity(cfg.layer_sparsity)
    cluster_rules = parse_layer_clusters(cfg.layer_clusters)
    on = []
    if cfg.prune > 0 or cfg.structured or any(v not in (0, 0.0) for _, v in sparsity_rules):
        on.append("prune")
    if cfg.cluster > 0 or any(n > 0 for _, n in cluster_rules):
        on.append("cluster")
    if cfg.qat:
        on.append("qat")
    return tuple(on)


def check(cfg: CompressConfig) -> None:
    """Cross-field checks the per-flag validators cannot make; raises UserError."""
    if not techniques(cfg):
        raise UserError("nothing to compress: pass --prune=SPARSITY and/or --structured=2:4, "
                        "--cluster=N, --qat (or per-layer --layer_sparsity/--layer_clusters)")
    if cfg.structured:
        parse_m_by_n(cfg.structured)
    if cfg.prune_schedule == "polynomial" and cfg.prune and cfg.initial_sparsity > cfg.prune:
        raise UserError(f"--initial_sparsity={cfg.initial_sparsity} exceeds the target "
                        f"--prune={cfg.prune}")


def summary(cfg: CompressConfig) -> Dict:
    """The compression settings that matter for a report (the rest is in config.json)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("report_tflite",)}
