"""The head every exported graph ends with: logits divided by the fitted temperature,
probabilities, and (when a rule was chosen) the out-of-scope score and the ``abstain`` flag.

Folding T and the abstention rule into the graph means TFLite, ONNX and the SavedModel all
return the calibrated probabilities and the same decision, with no app-side arithmetic.
"""
import dataclasses
import os
from typing import Dict, Optional

import tensorflow as tf

from slm_tf.io_utils import read_json

TRUST_KEY = "trust"  # where train/distill/compress record T and the rule in metrics.json


@dataclasses.dataclass(frozen=True)
class ServingHead:
    """Temperature plus an optional abstention rule ``{method, threshold, oos_index}``."""
    temperature: float = 1.0
    rule: Optional[Dict] = None

    def outputs(self, logits: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Named outputs computed from the raw model logits."""
        logits = logits / tf.constant(self.temperature, logits.dtype)
        probs = tf.nn.softmax(logits, axis=-1)
        out = {"logits": logits, "probabilities": probs}
        if self.rule:
            score = _SCORES[self.rule["method"]](logits, probs, self.temperature,
                                                 self.rule.get("oos_index"))
            out["oos_score"] = score
            out["abstain"] = tf.cast(score > self.rule["threshold"], tf.float32)
        return out


def _in_scope(x: tf.Tensor, oos_index: Optional[int]) -> tf.Tensor:
    # A constant-index GATHER (builtin, int8-friendly) rather than a -1e4 mask: a huge constant
    # would stretch the int8 quantization range of the tensor it is added to.
    if oos_index is None:
        return x
    keep = [i for i in range(x.shape[-1]) if i != oos_index]
    return tf.gather(x, keep, axis=-1)


def _max_prob(logits, probs, temperature, oos_index):
    return 1.0 - tf.reduce_max(_in_scope(probs, oos_index), axis=-1)


def _energy(logits, probs, temperature, oos_index):
    # ``logits`` are already divided by T.
    return -temperature * tf.reduce_logsumexp(_in_scope(logits, oos_index), axis=-1)


def _oos_class(logits, probs, temperature, oos_index):
    return probs[:, oos_index]


def _oos_margin(logits, probs, temperature, oos_index):
    # ``logits`` are already divided by T.
    return logits[:, oos_index] - tf.reduce_max(_in_scope(logits, oos_index), axis=-1)


_SCORES = {"max_prob": _max_prob, "energy": _energy, "oos_class": _oos_class,
           "oos_margin": _oos_margin}


def load_head(run_dir: str) -> ServingHead:
    """The head a run recorded in its ``metrics.json`` (identity when it recorded none)."""
    path = os.path.join(run_dir, "metrics.json")
    trust = read_json(path).get(TRUST_KEY, {}) if os.path.exists(path) else {}
    return ServingHead(float(trust.get("temperature", 1.0)), trust.get("rule"))


def abstain_spec(head: ServingHead) -> Optional[Dict]:
    """The bundle's description of the abstention rule (None when the run chose none)."""
    if not head.rule:
        return None
    return {**head.rule, "output": "abstain",
            "meaning": "abstain = 1.0 when oos_score > threshold: answer 'none of my intents' "
                       "instead of the top label. Both outputs are computed in the graph; "
                       "probabilities are already divided by the temperature."}
