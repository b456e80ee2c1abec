"""DPConfig: the DP-SGD settings (TensorFlow-free, so flags are checked before TF loads)."""
import dataclasses

from slm_tf.config import field, fraction, non_negative
from slm_tf.errors import UserError


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
