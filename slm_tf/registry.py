"""A small name -> factory registry used for models, datasets, tokenizers and strategies."""
from typing import Callable, Dict, Generic, List, TypeVar

from slm_tf.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; unknown names raise a ``UserError`` listing the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``."""
        def deco(obj: T) -> T:
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

    def names(self) -> List[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
