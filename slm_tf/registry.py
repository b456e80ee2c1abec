"""A small name -> factory registry used for models, datasets, tokenizers and strategies."""
from typing import Callable, Dict, Generic, List, Optional, Sequence, TypeVar

from slm_tf.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; unknown names raise a ``UserError`` listing the known ones."""

    def __init__(self, kind: str, declared: Optional[Sequence[str]] = None):
        """``declared``: the names a TensorFlow-free config offers as flag choices; only those
        may be registered, and :meth:`check_complete` asserts all of them were."""
        self.kind = kind
        self.declared = tuple(declared) if declared is not None else None
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``."""
        def deco(obj: T) -> T:
            if self.declared is not None and name not in self.declared:
                raise ValueError(f"{self.kind} {name!r} is not declared in {self.declared}; "
                                 "add it to the config's names list")
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj
        return deco

    def get(self, name: str) -> T:
        """Returns the factory registered under ``name``."""
        try:
            return self._items[name]
        except KeyError:
            raise UserError(f"unknown {self.kind} {name!r}; choose one of: "
                           f"{', '.join(sorted(self._items))}") from None

    def check_complete(self) -> None:
        """Raises ImportError when a declared name has no registered factory."""
        missing = sorted(set(self.declared or ()) - set(self._items))
        if missing:
            raise ImportError(f"{self.kind} names {missing} are declared but not registered")

    def names(self) -> List[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
