"""One small registry for every extension point: register an entry under a name (and aliases), get it back with a
"did you mean" error, list the names by pattern.

>>> r = Registry("colour", KeyError)
>>> r.register("red", 1, aliases=("rouge",))
1
>>> r.alias("crimson", "red", deprecated=True)
>>> r.get("rouge"), r.names(), r.names("r*"), r.names(aliases=True)
(1, ['red'], ['red'], ['red', 'rouge'])
>>> import warnings
>>> with warnings.catch_warnings(record=True) as w:
...     warnings.simplefilter("always")
...     print(r.get("crimson"), w[0].message)
1 colour 'crimson' is deprecated: use 'red'
>>> r.get("blu")
Traceback (most recent call last):
KeyError: "unknown colour 'blu'. Valid colours: 'red', 'rouge'."
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Entries by name, in registration order. `what` names an entry in messages ("strategy", "backend"); `error`
    is raised for an unknown name (its message names the closest registered ones); `hint` ends that message."""

    def __init__(self, what: str, error: type[Exception] = KeyError, hint: str = ""):
        self.what, self.error, self.hint = what, error, hint
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, tuple[str, bool]] = {}  # alias -> (name, deprecated)

    def register(self, name: str, entry: T, *, overwrite: bool = False, aliases: tuple[str, ...] = ()) -> T:
        """Add `entry` under `name` (and `aliases`); a taken name raises ValueError unless `overwrite`."""
        if not overwrite and (name in self._entries or name in self._aliases):
            raise ValueError(f"{self.what} {name!r} is already registered; pass overwrite=True to replace it")
        self._aliases.pop(name, None)
        self._entries[name] = entry
        for a in aliases:
            self.alias(a, name, overwrite=overwrite)
        return entry

    def alias(self, alias: str, name: str, *, deprecated: bool = False, overwrite: bool = False) -> None:
        """Let `alias` resolve to the entry `name` (with a DeprecationWarning when `deprecated`)."""
        if name not in self._entries:
            raise self.error(f"cannot alias {alias!r} to unregistered {self.what} {name!r}")
        if not overwrite and (alias in self._entries or alias in self._aliases):
            raise ValueError(f"{self.what} {alias!r} is already registered; pass overwrite=True to replace it")
        self._aliases[alias] = (name, deprecated)

    def canonical(self, name: str) -> str:
        """The name `name` resolves to (itself, or the name an alias stands for); unknown names raise `error`."""
        if isinstance(name, str) and name in self._entries:
            return name
        if isinstance(name, str) and name in self._aliases:
            target, deprecated = self._aliases[name]
            if deprecated:
                warnings.warn(f"{self.what} {name!r} is deprecated: use {target!r}", DeprecationWarning, stacklevel=3)
            return target
        from .errors import suggest

        raise self.error(f"unknown {self.what} {name!r}.{suggest(str(name), self.names(aliases=True), self.what)}"
                         + (f" {self.hint}" if self.hint else ""))  # fmt: skip

    def get(self, name: str) -> T:
        """The entry registered as `name` or an alias of it."""
        return self._entries[self.canonical(name)]

    def replace(self, name: str, entry: T) -> T:
        """Swap the entry registered as `name` (its aliases stay)."""
        self._entries[self.canonical(name)] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove `name` and its aliases (e.g. what a test registered); returns the entry."""
        name = self.canonical(name)
        self._aliases = {a: t for a, t in self._aliases.items() if t[0] != name}
        return self._entries.pop(name)

    def names(self, pattern: str | None = None, *, aliases: bool = False) -> list[str]:
        """Registered names matching the glob `pattern` (all when None), in registration order; with `aliases`,
        the aliases that are not deprecated too, each after the name it stands for."""
        out = []
        for n in self._entries:
            out.append(n)
            if aliases:
                out += [a for a, (t, dep) in self._aliases.items() if t == n and not dep]
        return [n for n in out if pattern is None or fnmatch.fnmatchcase(n, pattern)]

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
