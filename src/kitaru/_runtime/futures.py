"""Futures of submitted checkpoint calls (``cp.submit()``, ``.map()``, ``.product()``)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported by the first .submit() (see ExecutionContext.submit)
    import concurrent.futures


class CheckpointFuture:
    """The pending result of a submitted checkpoint call.

    ``result()`` (alias ``load()``) blocks and returns the value or raises the
    call's error; in an async flow the future can be awaited. A future passed
    as an argument to another checkpoint is resolved first.
    """

    def __init__(
        self,
        call_id: str,
        name: str,
        future: concurrent.futures.Future[Any],
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.call_id = call_id
        self.name = name
        self._future = future
        self._on_failure = on_failure
        #: Set once the body saw the outcome; uncollected failures fail the execution.
        self.collected = False

    def __repr__(self) -> str:
        state = "done" if self._future.done() else "pending"
        return f"<CheckpointFuture {self.call_id!r} {state}>"

    def result(self, timeout: float | None = None) -> Any:
        try:
            value = self._future.result(timeout)
        except TimeoutError:  # concurrent.futures' (the builtin since 3.11)
            raise  # the outcome is still unknown: not collected
        except BaseException:
            self._collect(failed=True)
            raise
        self._collect(failed=False)
        return value

    def _collect(self, *, failed: bool) -> None:
        self.collected = True
        if failed and self._on_failure is not None:
            # The body sees this call's error: name it in the failure record.
            self._on_failure(self.name)

    def load(self, timeout: float | None = None) -> Any:
        return self.result(timeout)

    def done(self) -> bool:
        return self._future.done()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        error = self._future.exception(timeout)  # TimeoutError propagates: not collected
        self.collected = True
        return error

    def __await__(self) -> Generator[Any, None, Any]:
        import asyncio

        try:
            value = yield from asyncio.wrap_future(self._future).__await__()
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._collect(failed=True)
            raise
        self._collect(failed=False)
        return value

    @property
    def raw(self) -> concurrent.futures.Future[Any]:
        return self._future


#: Argument types that never hold a future: returned as they are at once.
_PLAIN = frozenset({int, float, str, bool, bytes, type(None)})


def resolve(value: Any) -> Any:
    """Replace futures (also inside lists, tuples and dict values) by their results."""
    if type(value) in _PLAIN:
        return value
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
    return tuple([resolve(a) for a in args]), {k: resolve(v) for k, v in kwargs.items()}


async def resolve_async(value: Any) -> Any:
    """``resolve`` for async callers: awaits futures instead of blocking the loop."""
    if isinstance(value, CheckpointFuture):
        return await value
    if isinstance(value, list):
        return [await resolve_async(v) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple([await resolve_async(v) for v in value])
    if isinstance(value, dict) and type(value) is dict:
        return {k: await resolve_async(v) for k, v in value.items()}
    return value
