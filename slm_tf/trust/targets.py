"""The abstention target a user states (``--abstain_target``); TensorFlow-free, so the flag is
checked before TensorFlow loads."""
import dataclasses

from slm_tf.errors import UserError

TARGETS = ("oos_recall", "in_scope_precision")


@dataclasses.dataclass(frozen=True)
class Target:
    """What the threshold must reach on validation, e.g. ``oos_recall:0.8``."""
    metric: str
    value: float

    @classmethod
    def parse(cls, text: str) -> "Target":
        """``'oos_recall:0.8'`` -> Target; a UserError names the accepted forms otherwise."""
        metric, _, value = text.partition(":")
        try:
            v = float(value)
        except ValueError:
            v = -1.0
        if metric not in TARGETS or not 0.0 < v <= 1.0:
            raise UserError(f"--abstain_target={text!r}: expected <metric>:<value> with metric "
                            f"one of {', '.join(TARGETS)} and value in (0, 1], e.g. "
                            "oos_recall:0.8 or in_scope_precision:0.95")
        return cls(metric, v)


def valid_target(text: str) -> bool:
    """True when ``text`` parses as a :class:`Target` (the flag validator)."""
    try:
        Target.parse(text)
    except UserError:
        return False
    return True
