"""Dataclass configs that are mirrored 1:1 by absl flags.

Each config field is declared with :func:`field` (default, help text, optional choices and
validator). :func:`define_flags` turns a dataclass into absl flags of the same names and
:func:`from_flags` reads them back, so a flagfile, the command line and Python code all
build the same config object.
"""
import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Type, TypeVar

from absl import flags

from slm_tf.errors import UserError
from slm_tf.recipes import expand_flagfiles

C = TypeVar("C")


def field(default: Any, help: str, choices: Optional[Sequence[str]] = None,
          validate: Optional[Callable[[Any], bool]] = None, rule: str = "") -> Any:
    """Declares a config field with its flag help, allowed choices and a validator."""
    meta = {"help": help, "choices": choices, "validate": validate, "rule": rule}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def positive(x) -> bool:
    return x is not None and x > 0


def non_negative(x) -> bool:
    return x is not None and x >= 0


def fraction(x) -> bool:
    return x is not None and 0.0 <= x < 1.0


def _flag_type(f: dataclasses.Field) -> type:
    if f.type in (bool, "bool"):
        return bool
    if f.type in (int, "int"):
        return int
    if f.type in (float, "float"):
        return float
    if "List" in str(f.type) or "list" in str(f.type):
        return list
    return str


# Config class name of each flag that define_flags made, per FlagValues, in definition order:
# absl attributes those flags to this module, so --help groups them by config with this instead.
_GROUPS: Dict[int, Dict[str, str]] = {}


def flag_groups(flag_values: flags.FlagValues = flags.FLAGS) -> Dict[str, List[str]]:
    """Config class name -> names of the flags :func:`define_flags` defined for it."""
    out: Dict[str, List[str]] = {}
    for name, group in _GROUPS.get(id(flag_values), {}).items():
        out.setdefault(group, []).append(name)
    return out


def define_flags(cls: Type[C], flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one absl flag per field of ``cls`` (skips flags that already exist)."""
    groups = _GROUPS.setdefault(id(flag_values), {})
    for f in dataclasses.fields(cls):
        if f.name in flag_values:
            continue
        groups[f.name] = cls.__name__
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = _flag_type(f)
        help_text = meta.get("help") or f.name
        if meta.get("choices"):
            flags.DEFINE_enum(f.name, default, list(meta["choices"]), help_text,
                              flag_values=flag_values)
        elif kind is bool:
            flags.DEFINE_bool(f.name, default, help_text, flag_values=flag_values)
        elif kind is int:
            flags.DEFINE_integer(f.name, default, help_text, flag_values=flag_values)
        elif kind is float:
            flags.DEFINE_float(f.name, default, help_text, flag_values=flag_values)
        elif kind is list:
            flags.DEFINE_list(f.name, default, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(f.name, default, help_text, flag_values=flag_values)
        if meta.get("validate") is not None:
            rule = meta.get("rule") or "a valid value"
            flags.register_validator(
                f.name, meta["validate"], message=f"--{f.name} must be {rule}",
                flag_values=flag_values)


def from_flags(cls: Type[C], flag_values: flags.FlagValues = flags.FLAGS) -> C:
    """Builds ``cls`` from the parsed flags of the same names."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        value = flag_values[f.name].value
        if _flag_type(f) is list and value is not None:
            value = list(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def validate(cfg: Any) -> None:
    """Applies each field's validator to a config built in Python (flags validate themselves)."""
    for f in dataclasses.fields(cfg):
        check = f.metadata.get("validate")
        value = getattr(cfg, f.name)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise UserError(f"{type(cfg).__name__}.{f.name}={value!r}: choose one of {list(choices)}")
        if check is not None and not check(value):
            raise UserError(f"{type(cfg).__name__}.{f.name}={value!r} must be "
                             f"{f.metadata.get('rule') or 'a valid value'}")


def to_dict(cfg: Any) -> dict:
    """A JSON-ready dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: Type[C], d: dict) -> C:
    """Builds ``cls`` from a dict, ignoring keys the class does not have."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


def parse_flagfile(classes: Sequence[type], flagfile: str, overrides: Sequence[str] = (),
                   defaults: Sequence[str] = ()):
    """Builds one config per class from a recipe flagfile plus ``--name=value`` overrides
    (``defaults`` come before the flagfile, as a script's own defaults would).

    Paths inside the recipe resolve relative to it (:func:`slm_tf.recipes.expand_flagfiles`).
    Uses a private FlagValues, so benchmarks and the pipeline can read several recipes in one
    process exactly as the command line would.
    """
    return parse_recipe(classes, flagfile, overrides, defaults)[0]


def parse_recipe(classes: Sequence[type], flagfile: str, overrides: Sequence[str] = (),
                 defaults: Sequence[str] = ()):
    """``(configs, names of the flags set)``: :func:`parse_flagfile`, also saying which flags
    the recipe or the overrides set (what the automatic recipe must not change); an empty
    ``flagfile`` means no recipe, only the overrides."""
    fv = flags.FlagValues()
    for cls in classes:
        define_flags(cls, fv)
    recipe = [f"--flagfile={flagfile}"] if flagfile else []
    fv(expand_flagfiles(["recipe", *defaults, *recipe, *overrides]))
    return tuple(from_flags(cls, fv) for cls in classes), {n for n in fv if fv[n].present}
