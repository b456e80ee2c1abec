"""Lazy package entry points: a package whose configs import without TensorFlow forwards every
other name to a heavy module, loaded (with TensorFlow) on first use."""
import importlib


def forward_to(package: str, module: str):
    """A module-level ``__getattr__`` for ``package`` that loads ``module`` on first use and
    returns its attribute of the requested name."""
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return getattr(importlib.import_module(module), name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
    return __getattr__
