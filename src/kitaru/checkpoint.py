"""``@checkpoint``: a unit of work whose return value is persisted.

Inside a running flow body, calling a checkpoint returns the plain Python
value; the runtime decides whether to run the function or to return the
output it already recorded for that call.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar, overload

from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru._runtime.execution import code_hash
from kitaru.config import validate_cache, validate_retries
from kitaru.errors import KitaruContextError, KitaruUsageError

P = ParamSpec("P")
R = TypeVar("R")

RUNTIMES = ("inline", "isolated")


class Checkpoint(Generic[P, R]):
    """A function decorated with ``@checkpoint``."""

    def __init__(
        self,
        func: Callable[P, R],
        *,
        retries: int = 0,
        type: str | None = None,
        runtime: str | None = None,
        cache: bool | None = None,
    ) -> None:
        if not callable(func):
            raise KitaruUsageError(f"@checkpoint decorates a function, got {func!r}.")
        self.func = func
        self.name: str = getattr(func, "__name__", type_name(func))
        where = f"@checkpoint for {self.name!r}"
        self.retries: int = validate_retries(retries, where=where) or 0
        self.cache: bool | None = validate_cache(cache, where=where)
        if type is not None and not isinstance(type, str):
            raise KitaruUsageError(
                f"type= in {where} must be a string label such as 'llm_call', got {type!r}."
            )
        self.type = type
        self.runtime: str = _validate_runtime(runtime, where)
        self._cache_prefix: str | None = None
        functools.update_wrapper(self, func)

    def cache_prefix(self) -> str:
        """Name + source hash, the part of the cache key that does not depend on inputs."""
        if self._cache_prefix is None:
            digest = hashlib.sha256(f"{self.name}\0{code_hash(self.func)}".encode()).hexdigest()
            self._cache_prefix = digest[:32] + ":"
        return self._cache_prefix

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        # ``id`` and ``after`` are Kitaru's call-time options, not the function's.
        call_id = kwargs.pop("id", None)
        kwargs.pop("after", None)
        ctx = current_execution.get()
        if ctx is None:
            raise KitaruContextError(
                f"Checkpoint {self.name!r} was called outside a running flow. Call it from "
                "the body of a @flow function and start the flow with .run(...)."
            )
        if current_checkpoint.get() is not None:
            outer = current_checkpoint.get()
            raise KitaruContextError(
                f"Checkpoint {self.name!r} was called inside checkpoint "
                f"{outer.name if outer else '?'!r}; checkpoints cannot be nested. Call it "
                "from the flow body instead, or make it a plain function."
            )
        assigned = ctx.assign_call_id(self.name, call_id)  # type: ignore[arg-type]
        result: R = ctx.call_checkpoint(self, args, kwargs, assigned)
        return result

    def __repr__(self) -> str:
        return f"<kitaru checkpoint {self.name!r}>"


def type_name(obj: object) -> str:
    return type(obj).__name__


def _validate_runtime(runtime: str | None, where: str) -> str:
    if runtime is None:
        return "inline"
    if isinstance(runtime, str) and runtime.lower() in RUNTIMES:
        return runtime.lower()
    raise KitaruUsageError(
        f"runtime= in {where} must be 'inline' or 'isolated' (any case), got {runtime!r}."
    )


@overload
def checkpoint(func: Callable[P, R], /) -> Checkpoint[P, R]: ...


@overload
def checkpoint(
    func: None = None,
    /,
    *,
    retries: int = 0,
    type: str | None = None,
    runtime: str | None = None,
    cache: bool | None = None,
) -> Callable[[Callable[P, R]], Checkpoint[P, R]]: ...


def checkpoint(
    func: Callable[P, R] | None = None,
    /,
    *,
    retries: int = 0,
    type: str | None = None,
    runtime: str | None = None,
    cache: bool | None = None,
) -> Checkpoint[P, R] | Callable[[Callable[P, R]], Checkpoint[P, R]]:
    """Mark a function as a checkpoint: its return value is persisted.

    Use bare (``@checkpoint``) or with options
    (``@checkpoint(retries=2, type="llm_call", cache=False)``).
    """
    if func is not None:
        return Checkpoint(func, retries=retries, type=type, runtime=runtime, cache=cache)

    def decorate(f: Callable[P, R]) -> Checkpoint[P, R]:
        return Checkpoint(f, retries=retries, type=type, runtime=runtime, cache=cache)

    return decorate
