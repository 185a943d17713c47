"""``@checkpoint``: a unit of work whose return value is persisted.

Inside a running flow body, calling a checkpoint returns the plain Python
value; the runtime decides whether to run the function or to return the
output it already recorded for that call.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Callable, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from kitaru import _digest
from kitaru._limits import MAX_TYPE_LABEL, check_name
from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru._runtime.execution import NOT_RECORDED, ExecutionContext, code_hash
from kitaru._runtime.futures import CheckpointFuture, resolve_arguments, resolve_async
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
        self.name: str = check_name(getattr(func, "__name__", type_name(func)), "checkpoint")
        where = f"@checkpoint for {self.name!r}"
        self.retries: int = validate_retries(retries, where=where) or 0
        self.cache: bool | None = validate_cache(cache, where=where)
        if type is not None and (not isinstance(type, str) or len(type) > MAX_TYPE_LABEL):
            raise KitaruUsageError(
                f"type= in {where} must be a string label of at most {MAX_TYPE_LABEL} "
                f"characters such as 'llm_call', got {type!r}."
            )
        self.type = type
        self.runtime: str = _validate_runtime(runtime, where)
        self._cache_prefix: str | None = None
        self._is_async = inspect.iscoroutinefunction(func)
        functools.update_wrapper(self, func)

    def cache_prefix(self) -> str:
        """Name + source hash, the part of the cache key that does not depend on inputs."""
        if self._cache_prefix is None:
            digest = _digest.sha256(f"{self.name}\0{code_hash(self.func)}".encode()).hexdigest()
            self._cache_prefix = digest[:32] + ":"
        return self._cache_prefix

    def _context(self, what: str) -> ExecutionContext:
        ctx = current_execution.get()
        if ctx is None:
            raise KitaruContextError(
                f"Checkpoint {self.name!r} was {what} outside a running flow. Call it from "
                "the body of a @flow function and start the flow with .run(...)."
            )
        outer = current_checkpoint.get()
        if outer is not None:
            raise KitaruContextError(
                f"Checkpoint {self.name!r} was {what} inside checkpoint {outer.name!r}; "
                "checkpoints cannot be nested. Call it from the flow body instead, or make "
                "it a plain function."
            )
        return ctx

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        # ``id`` and ``after`` are Kitaru's call-time options, not the function's.
        call_id = kwargs.pop("id", None)
        after = _as_futures(kwargs.pop("after", None))
        ctx = self._context("called")
        assigned = ctx.assign_call_id(self.name, call_id)  # type: ignore[arg-type]
        if self._is_async:
            return cast(R, self._call_async(ctx, args, kwargs, assigned, after))
        for dependency in after:
            dependency.raw.result()
        resolved_args, resolved_kwargs = resolve_arguments(args, kwargs)
        result: R = ctx.call_checkpoint(self, resolved_args, resolved_kwargs, assigned)
        return result

    def _call_async(
        self,
        ctx: ExecutionContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        call_id: str,
        after: list[CheckpointFuture],
    ) -> Any:
        """An ``async def`` checkpoint: a coroutine in an async flow, a value in a sync one."""
        import asyncio  # only async checkpoints pay for importing asyncio

        try:
            asyncio.get_running_loop()
            in_loop = True
        except RuntimeError:
            in_loop = False
        if in_loop:
            ctx.mark_concurrent(call_id)  # awaited calls may finish out of order (gather)
        found = ctx.begin_call(self, call_id)  # in call order, like a sync call

        async def run() -> Any:
            if found is not NOT_RECORDED:
                return found
            for dependency in after:
                await dependency
            resolved_args = tuple([await resolve_async(a) for a in args])
            resolved_kwargs = {k: await resolve_async(v) for k, v in kwargs.items()}
            with ctx.checkpoint_span(self, call_id):
                return await ctx.finish_call_async(self, resolved_args, resolved_kwargs, call_id)

        if not in_loop:
            return asyncio.run(run())  # a sync flow body calling an async checkpoint
        return run()

    def submit(
        self, *args: Any, id: str | None = None, after: Any = None, **kwargs: Any
    ) -> CheckpointFuture:
        """Start the call on the execution's pool; returns a future at once.

        The call id is assigned now, in submission order, so a resumed body
        matches its recorded calls whatever order they finished in.
        """
        ctx = self._context("submitted")
        if self._is_async:
            raise KitaruUsageError(
                f"Checkpoint {self.name!r} is async: await it (or asyncio.gather several) "
                "instead of .submit()."
            )
        call_id = ctx.assign_call_id(self.name, id)
        return ctx.submit(self, args, kwargs, call_id, _as_futures(after))

    def map(
        self, *iterables: Iterable[Any], after: Any = None, **kwargs: Any
    ) -> list[CheckpointFuture]:
        """Submit one call per item (several iterables are zipped); futures in input order."""
        if not iterables:
            raise KitaruUsageError(f"{self.name}.map() needs at least one iterable.")
        return [
            self.submit(*items, after=after, **kwargs) for items in zip(*iterables, strict=True)
        ]

    def product(
        self, *iterables: Iterable[Any], after: Any = None, **kwargs: Any
    ) -> list[CheckpointFuture]:
        """Submit one call per combination of the iterables' items (itertools.product order)."""
        if not iterables:
            raise KitaruUsageError(f"{self.name}.product() needs at least one iterable.")
        return [
            self.submit(*items, after=after, **kwargs) for items in itertools.product(*iterables)
        ]

    def __repr__(self) -> str:
        return f"<kitaru checkpoint {self.name!r}>"


def _as_futures(after: Any) -> list[CheckpointFuture]:
    if after is None:
        return []
    items = [after] if isinstance(after, CheckpointFuture) else list(after)
    for item in items:
        if not isinstance(item, CheckpointFuture):
            raise KitaruUsageError(
                f"after= takes futures returned by .submit()/.map(), got {item!r}."
            )
    return items


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
def checkpoint(func: Callable[P, R]) -> Checkpoint[P, R]: ...


@overload
def checkpoint(
    func: None = None,
    *,
    retries: int = 0,
    type: str | None = None,
    runtime: str | None = None,
    cache: bool | None = None,
) -> Callable[[Callable[P, R]], Checkpoint[P, R]]: ...


def checkpoint(
    func: Callable[P, R] | None = None,
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
