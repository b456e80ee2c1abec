"""DPConfig: the DP-SGD settings; AbstainConfig: re-choosing a finished run's abstention rule
(scripts/abstain.py). TensorFlow-free, so flags are checked before TF loads."""
import dataclasses

from slm_tf.config import field, fraction, non_negative
from slm_tf.errors import UserError
from slm_tf.trust.targets import (ABSTAIN_METHOD_HELP, ABSTAIN_METHODS, ABSTAIN_TARGET_HELP,
                                  ABSTAIN_TARGET_RULE, DEFAULT_ABSTAIN_METHOD,
                                  DEFAULT_ABSTAIN_TARGET, valid_target)


@dataclasses.dataclass
class DPConfig:
    dp_l2_clip: float = field(0.0, "DP-SGD: clip each example's gradient to this L2 norm C "
                              "(> 0 turns DP-SGD on; microbatches of one).",
                              validate=non_negative, rule=">= 0")
    dp_noise_multiplier: float = field(0.0, "DP-SGD: Gaussian noise of standard deviation "
                                       "sigma * C added to the summed clipped gradients "
                                       "(0 = clipping only, epsilon is infinite).",
                                       validate=non_negative, rule=">= 0")
    dp_delta: float = field(0.0, "delta of the reported (epsilon, delta); 0 = 1 / number of "
                            "training examples.", validate=fraction, rule="in [0, 1)")

    @property
    def enabled(self) -> bool:
        return self.dp_l2_clip > 0 or self.dp_noise_multiplier > 0


def check(cfg: DPConfig) -> None:
    """Refuses noise without a clipping bound (the noise scale is sigma * C)."""
    if cfg.dp_noise_multiplier > 0 and cfg.dp_l2_clip <= 0:
        raise UserError(f"--dp_noise_multiplier={cfg.dp_noise_multiplier} needs a clipping bound: "
                        "the noise is scaled by it. Fix: also pass --dp_l2_clip (e.g. 1.0).")


@dataclasses.dataclass
class AbstainConfig:
    """scripts/abstain.py: a finished run and the rule to choose for it (same defaults and
    choices as train.py's flags)."""
    run_dir: str = field("", "A finished train.py/distill.py/compress.py run of a classifier.",
                         validate=bool, rule="set")
    abstain_method: str = field(DEFAULT_ABSTAIN_METHOD, ABSTAIN_METHOD_HELP,
                                choices=ABSTAIN_METHODS)
    abstain_target: str = field(DEFAULT_ABSTAIN_TARGET, ABSTAIN_TARGET_HELP,
                                validate=valid_target, rule=ABSTAIN_TARGET_RULE)
