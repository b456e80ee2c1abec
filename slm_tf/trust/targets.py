"""The abstention target a user states (``--abstain_target``); TensorFlow-free, so the flag is
checked before TensorFlow loads."""
import dataclasses
from typing import Optional

from slm_tf.errors import UserError

TARGETS = ("oos_recall", "in_scope_precision", "in_scope_cost")
# Targets that bound from above (abstain as much as the bound allows); the others are reached
# from below (abstain as little as reaches them).
UPPER_BOUND_TARGETS = ("in_scope_cost",)
# --abstain_method's choices (the scores are registered in slm_tf.trust.abstention.METHODS; a
# test keeps the two lists equal) and the defaults train.py and abstain.py share.
ABSTAIN_METHODS = ("auto", "none", "max_prob", "energy", "oos_class", "oos_margin")
DEFAULT_ABSTAIN_METHOD = "auto"
DEFAULT_ABSTAIN_TARGET = "oos_recall:0.8"
ABSTAIN_METHOD_HELP = ("Out-of-scope score whose threshold exported models apply (an 'abstain' "
                       "output); auto = oos_class when the labels have 'oos', else max_prob; "
                       "none = no rule. Needs out-of-scope validation examples.")
ABSTAIN_TARGET_HELP = ("What the abstention threshold must reach on validation: "
                       "oos_recall:<r>, in_scope_precision:<p>, or in_scope_cost:<c> (abstain "
                       "on as much as possible while in-scope accuracy loses at most c, e.g. "
                       "0.02 = 2 points, to abstaining; judged on the in-scope validation "
                       "queries, usually far more than the out-of-scope ones); or "
                       "oos_recall:<r>,in_scope_cost:<c> (reach r with the fewest abstentions, "
                       "but never lose more than c: the cost bound wins when both cannot hold).")
ABSTAIN_TARGET_RULE = ("oos_recall:<r>, in_scope_precision:<p> or in_scope_cost:<c>, or one of "
                       "the first two then ,in_scope_cost:<c>; values in (0, 1]")


@dataclasses.dataclass(frozen=True)
class Target:
    """What the threshold must reach on validation, e.g. ``oos_recall:0.8``; ``cap`` (an
    ``in_scope_cost`` target) bounds what reaching it may cost."""
    metric: str
    value: float
    cap: Optional["Target"] = None

    @classmethod
    def parse(cls, text: str) -> "Target":
        """``'oos_recall:0.8'`` or ``'oos_recall:0.8,in_scope_cost:0.02'`` -> Target; a
        UserError names the accepted forms otherwise."""
        first, _, cap = text.partition(",")
        target = cls._parse_one(first, text)
        if not cap:
            return target
        bound = cls._parse_one(cap, text)
        if target.metric in UPPER_BOUND_TARGETS or bound.metric not in UPPER_BOUND_TARGETS:
            raise UserError(f"--abstain_target={text!r}: a second part bounds the cost of the "
                            "first: write oos_recall:<r>,in_scope_cost:<c> (or "
                            "in_scope_precision:<p>,in_scope_cost:<c>), e.g. "
                            "oos_recall:0.85,in_scope_cost:0.02")
        return cls(target.metric, target.value, bound)

    @classmethod
    def _parse_one(cls, part: str, text: str) -> "Target":
        metric, _, value = part.partition(":")
        try:
            v = float(value)
        except ValueError:
            v = -1.0
        if metric not in TARGETS or not 0.0 < v <= 1.0:
            raise UserError(f"--abstain_target={text!r}: expected <metric>:<value> with metric "
                            f"one of {', '.join(TARGETS)} and value in (0, 1], e.g. "
                            "oos_recall:0.8, in_scope_precision:0.95 or in_scope_cost:0.02, or "
                            "a capped pair such as oos_recall:0.85,in_scope_cost:0.02")
        return cls(metric, v)


def valid_target(text: str) -> bool:
    """True when ``text`` parses as a :class:`Target` (the flag validator)."""
    try:
        Target.parse(text)
    except UserError:
        return False
    return True
