"""A list filled on first use, for parts of a snapshot that are costly to read.

``executions.resume()`` and ``retry()`` return the execution they restarted; for
an execution of 10,000 checkpoints, reading its calls (and building their
models) took most of a second that a caller who only looks at ``status`` never
needed. ``Deferred`` is a real ``list``: the first access of any kind reads it
in, and from then on it is an ordinary list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, SupportsIndex, TypeVar, overload

T = TypeVar("T")


class Deferred(list[T]):
    """A ``list`` whose items come from ``load()`` the first time it is used."""

    __slots__ = ("_load",)

    def __init__(self, load: Callable[[], list[T]]) -> None:
        super().__init__()
        self._load: Callable[[], list[T]] | None = load

    def _ready(self) -> None:
        load = self._load
        if load is not None:
            self._load = None
            super().extend(load())

    # Every read goes through _ready() first (list's C code reads its own storage).
    def __len__(self) -> int:
        self._ready()
        return super().__len__()

    def __iter__(self) -> Iterator[T]:
        self._ready()
        return super().__iter__()

    def __reversed__(self) -> Iterator[T]:
        self._ready()
        return super().__reversed__()

    def __contains__(self, item: object) -> bool:
        self._ready()
        return super().__contains__(item)

    @overload
    def __getitem__(self, index: SupportsIndex) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: Any) -> Any:
        self._ready()
        return super().__getitem__(index)

    def __eq__(self, other: object) -> bool:
        self._ready()
        if isinstance(other, Deferred):
            other._ready()
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None

    def __repr__(self) -> str:
        self._ready()
        return super().__repr__()

    def __add__(self, other: list[T]) -> list[T]:  # type: ignore[override]
        self._ready()
        return list(self) + list(other)

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        # Pickles (and deep copies) as the plain list it stands for.
        self._ready()
        return (list, (list(super().__iter__()),))

    def copy(self) -> list[T]:
        self._ready()
        return list(super().__iter__())

    def index(self, value: T, start: SupportsIndex = 0, stop: SupportsIndex = 2**63 - 1) -> int:
        self._ready()
        return super().index(value, start, stop)

    def count(self, value: T) -> int:
        self._ready()
        return super().count(value)


def _writer(name: str) -> Callable[..., Any]:
    method = getattr(list, name)

    def write(self: Deferred[Any], *args: Any, **kwargs: Any) -> Any:
        self._ready()
        return method(self, *args, **kwargs)

    write.__name__ = name
    return write


for _name in (
    "append",
    "extend",
    "insert",
    "pop",
    "remove",
    "clear",
    "sort",
    "reverse",
    "__setitem__",
    "__delitem__",
    "__iadd__",
    "__imul__",
    "__mul__",
    "__rmul__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
):
    setattr(Deferred, _name, _writer(_name))
