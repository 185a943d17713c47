"""Adapter calls: a framework's model request, tool call or graph node as a durable call.

Built on the runtime's durable-call primitive (``kitaru._runtime.durable_call``):
in a flow body each adapter call is a call of its own (memoised on resume,
reused by replay); inside a user checkpoint it runs inline and that checkpoint
is the durable unit. Either way the call says where it came from, in reserved
call metadata the client maps to ``CheckpointCall.checkpoint_origin == "adapter"``,
``adapter`` and ``adapter_checkpoint_kind``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru._runtime.durable_call import DurableCallSpec, durable_call, durable_call_async

T = TypeVar("T")

#: Call metadata key of an adapter call's origin: {"adapter": ..., "kind": ...}.
ADAPTER_KEY = "kitaru_adapter"
#: On a user checkpoint: the adapter calls that ran inline in it, in order.
INLINE_ADAPTER_CALLS_KEY = "kitaru_adapter_calls"


def _origin(adapter: str, kind: str) -> dict[str, str]:
    return {"adapter": adapter, "kind": kind}


def _note_inline(adapter: str, kind: str, name: str) -> None:
    frame = current_checkpoint.get()
    if frame is None:
        return
    calls = frame.metadata.get(INLINE_ADAPTER_CALLS_KEY)
    entry = {**_origin(adapter, kind), "name": name}
    frame.metadata[INLINE_ADAPTER_CALLS_KEY] = [*(calls if isinstance(calls, list) else []), entry]


def _tagged(func: Callable[..., T], adapter: str, kind: str) -> Callable[..., T]:
    """``func`` marking the durable call it runs in as an adapter call."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> T:
        frame = current_checkpoint.get()
        if frame is not None:
            frame.metadata[ADAPTER_KEY] = _origin(adapter, kind)
        return func(*args, **kwargs)

    return run


def adapter_call(
    func: Callable[..., T],
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    adapter: str,
    kind: str,
    name: str,
    call_type: str,
    retries: int = 0,
    concurrent: bool = False,
) -> T:
    """Run ``func`` as one durable adapter call (inline inside a user checkpoint).

    ``concurrent``: calls of this kind may run side by side from threads (a graph's
    parallel nodes), so the order they start in can differ between runs. Like
    ``.submit()`` calls they are marked concurrent: a resumed body reuses their
    recorded outputs in whatever order it reaches them.
    """
    if current_checkpoint.get() is not None:
        _note_inline(adapter, kind, name)
        return durable_call(func, args, kwargs, name=name, call_type=call_type, retries=retries)
    ctx = current_execution.get()
    if concurrent and ctx is not None:
        spec = DurableCallSpec(
            name, _tagged(func, adapter, kind), call_type=call_type, retries=retries
        )
        call_id = ctx.assign_call_id(name, None)
        ctx.mark_concurrent(call_id)
        result: T = ctx.call_checkpoint(spec, args, dict(kwargs or {}), call_id)
        return result
    return durable_call(
        _tagged(func, adapter, kind),
        args,
        kwargs,
        name=name,
        call_type=call_type,
        retries=retries,
    )


async def adapter_call_async(
    func: Callable[..., Awaitable[T]],
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    adapter: str,
    kind: str,
    name: str,
    call_type: str,
    retries: int = 0,
) -> T:
    """The ``async`` form of :func:`adapter_call` (``func`` returns an awaitable)."""
    if current_checkpoint.get() is not None:
        _note_inline(adapter, kind, name)
        return await durable_call_async(
            func, args, kwargs, name=name, call_type=call_type, retries=retries
        )

    @functools.wraps(func)
    async def run(*a: Any, **kw: Any) -> T:
        frame = current_checkpoint.get()
        if frame is not None:
            frame.metadata[ADAPTER_KEY] = _origin(adapter, kind)
        return await func(*a, **kw)

    return await durable_call_async(
        run, args, kwargs, name=name, call_type=call_type, retries=retries
    )
