"""Futures of submitted checkpoint calls (``cp.submit()``, ``.map()``, ``.product()``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Generator, Mapping
from typing import Any


class CheckpointFuture:
    """The pending result of a submitted checkpoint call.

    ``result()`` (alias ``load()``) blocks and returns the value or raises the
    call's error; in an async flow the future can be awaited. A future passed
    as an argument to another checkpoint is resolved first.
    """

    def __init__(self, call_id: str, name: str, future: concurrent.futures.Future[Any]) -> None:
        self.call_id = call_id
        self.name = name
        self._future = future
        #: Set once the body looked at the outcome; uncollected failures fail the execution.
        self.collected = False

    def __repr__(self) -> str:
        state = "done" if self._future.done() else "pending"
        return f"<CheckpointFuture {self.call_id!r} {state}>"

    def result(self, timeout: float | None = None) -> Any:
        self.collected = True
        return self._future.result(timeout)

    def load(self, timeout: float | None = None) -> Any:
        return self.result(timeout)

    def done(self) -> bool:
        return self._future.done()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self.collected = True
        return self._future.exception(timeout)

    def __await__(self) -> Generator[Any, None, Any]:
        self.collected = True
        return asyncio.wrap_future(self._future).__await__()

    @property
    def raw(self) -> concurrent.futures.Future[Any]:
        return self._future


def resolve(value: Any) -> Any:
    """Replace futures (also inside lists, tuples and dict values) by their results."""
    if isinstance(value, CheckpointFuture):
        return value.result()
    if isinstance(value, list):
        return [resolve(v) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(resolve(v) for v in value)
    if isinstance(value, dict) and type(value) is dict:
        return {k: resolve(v) for k, v in value.items()}
    return value


def resolve_arguments(
    args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return tuple(resolve(a) for a in args), {k: resolve(v) for k, v in kwargs.items()}
