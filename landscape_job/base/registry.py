"""One registry type for the project's tables of named things (per-point and per-checkpoint metrics).

A registered item has a ``key`` (unique), a ``choice`` (the spec item that turns it on;
several items may share one) and its ``dataset_names()`` in the file it ends in (unique
across the registry). Items register in order and keep it: files, reports and figures list
them that way. Built-in items cannot be removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Callable, Generic, Protocol, TypeVar


class Registrable(Protocol):
    key: str
    choice: str

    def dataset_names(self) -> tuple[str, ...]: ...


T = TypeVar("T", bound=Registrable)


class Registry(Generic[T]):
    """An ordered table of ``T`` by key; ``what`` names it in errors ("metric", "series metric").

    ``check`` (optional) refuses an item for a reason of the table's own, given the items
    already registered: one more rule, not a second registry. ``built_ins`` are registered
    first, in order, and cannot be unregistered.
    """

    def __init__(self, what: str, check: Callable[[T, Iterable[T]], None] | None = None,
                 built_ins: Iterable[T] = ()) -> None:
        self.what = what
        self._check = check
        self._items: dict[str, T] = {}
        self._built_in: set[str] = set()
        for item in built_ins:
            self.register(item, built_in=True)

    def register(self, item: T, built_in: bool = False) -> T:
        """Adds ``item``; its key and its dataset names must be new. Returns it."""
        if item.key in self._items:
            raise ValueError(f"{self.what} {item.key!r} is already registered")
        taken = {name for other in self._items.values() for name in other.dataset_names()}
        clash = taken.intersection(item.dataset_names())
        if clash:
            raise ValueError(f"{self.what} {item.key!r}: dataset names {sorted(clash)} are another {self.what}'s")
        if self._check is not None:
            self._check(item, self._items.values())
        self._items[item.key] = item
        if built_in:
            self._built_in.add(item.key)
        return item

    def unregister(self, key: str) -> None:
        """Removes an item added by ``register`` (tests, plugins that unload)."""
        if key in self._built_in:
            raise ValueError(f"{self.what} {key!r} is built in")
        self._items.pop(key, None)

    def registered(self) -> tuple[T, ...]:
        """All items, in registration order (the built-ins first)."""
        return tuple(self._items.values())

    def get(self, key: str) -> T:
        return self._items[key]

    def choices(self) -> tuple[str, ...]:
        """The spec items that turn items on, in registration order."""
        return tuple(dict.fromkeys(item.choice for item in self._items.values()))

    def selected(self, chosen: Iterable[str]) -> tuple[T, ...]:
        """The items the chosen spec items turn on, in registration order."""
        wanted = set(chosen)
        return tuple(item for item in self._items.values() if item.choice in wanted)

    def __iter__(self) -> Iterator[T]:
        return iter(tuple(self._items.values()))


class LiveChoices(Sequence):
    """A registry's ``choices()`` as a sequence that follows later registrations, so an item
    registered after the spec module was imported (a plugin, a test) is accepted by its parser."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def __getitem__(self, index):
        return self._registry.choices()[index]

    def __len__(self) -> int:
        return len(self._registry.choices())

    def __repr__(self) -> str:
        return repr(self._registry.choices())
