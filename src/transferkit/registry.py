"""One generic registry: backbones, strategies, heads and data sources are looked up by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from transferkit.errors import UnknownNameError, suggest

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to entries; `prefix_factories` resolve open families such as `timm:<name>`."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._prefixes: dict[str, Callable[[str], T]] = {}

    def register(self, name: str, entry: T | None = None):
        """Register `entry` under `name`; usable as a decorator when `entry` is omitted."""
        if entry is None:
            def decorator(obj: T) -> T:
                self._add(name, obj)
                return obj
            return decorator
        self._add(name, entry)
        return entry

    def register_prefix(self, prefix: str, factory: Callable[[str], T]) -> None:
        """Resolve any `prefix:<rest>` name by calling `factory(rest)`."""
        self._prefixes[prefix] = factory

    def _add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        prefix, sep, rest = name.partition(":")
        if sep and prefix in self._prefixes:
            return self._prefixes[prefix](rest)
        choices = list(self._entries) + [f"{p}:<name>" for p in self._prefixes]
        raise UnknownNameError(
            f"Unknown {self.kind} {name!r}.{suggest(name, self._entries)} "
            f"Available: {', '.join(choices)}."
        )

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def prefixes(self) -> list[str]:
        return list(self._prefixes)
