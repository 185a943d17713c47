"""Durable calls: run a function as a recorded call of a given type (``llm_call``, ``tool_call``).

``kitaru.llm()`` and the framework adapters (PydanticAI, OpenAI Agents, MCP, ...)
turn a model request or a tool invocation into a call the runtime records, with
the same guarantees as a checkpoint, without the user writing one::

    from kitaru._runtime.durable_call import durable_call

    reply = durable_call(
        send_request,                  # any callable; its return value is stored
        (messages,), {"model": model}, # its arguments (fingerprinted for the cache)
        name="llm",                    # call ids: llm, llm:2, ... (or call_id=...)
        call_type="llm_call",          # shown as the call's type; replay overrides
        retries=3,                     #   check it ("model" needs llm_call, "code"
        retry_if=is_transient,         #   needs tool_call)
    )

Where it runs decides what it is:

* **In a flow body** it is a call boundary of its own, exactly like a checkpoint
  call: it takes the next call id for ``name`` in body order; on resume a
  recorded output is returned without running ``func`` (an LLM request is not
  sent twice); a replay reuses it before ``at``, reruns it from ``at`` on, and
  honours ``checkpoint_overrides``/``invocation_overrides`` (``output``,
  ``input``, ``code`` for tool calls, ``model`` for LLM calls: read it with
  :func:`replay_model_override`). Failed attempts for which ``retry_if`` is true
  are retried up to ``retries`` times with the runtime's backoff and recorded as
  attempts of the call. The function runs with the call as the current
  checkpoint frame, so ``record_llm_usage``, ``kitaru.log`` and ``kitaru.save``
  inside it land on this call.
* **Inside a checkpoint** (or inside another durable call) it runs inline: the
  enclosing checkpoint is the durable unit (its output is what is memoised), and
  usage recorded by ``func`` lands on that checkpoint. Retries happen in place.
* **Outside a flow** it raises ``KitaruContextError``.

``cache`` is a checkpoint's ``cache=`` (an execution-level cache setting still
overrides it); the default is ``False`` because a second execution asking a model
the same question usually wants a fresh answer.

``durable_call_async`` is the same for ``async`` functions: call it where the
body makes the call (that fixes the call id) and await what it returns.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from kitaru import _digest
from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru._runtime.execution import ExecutionContext, code_hash, retry_backoff
from kitaru.errors import KitaruContextError, KitaruUsageError

T = TypeVar("T")

#: The call types the runtime knows (replay checks ``model``/``code`` overrides on them).
LLM_CALL = "llm_call"
TOOL_CALL = "tool_call"

RetryPredicate = Callable[[BaseException], bool]


class DurableCallSpec:
    """What the runtime needs to run ``func`` as a call (the CheckpointSpec protocol)."""

    def __init__(
        self,
        name: str,
        func: Callable[..., Any],
        *,
        call_type: str,
        retries: int = 0,
        retry_if: RetryPredicate | None = None,
        cache: bool | None = False,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise KitaruUsageError(f"A durable call needs a non-empty name, got {name!r}.")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise KitaruUsageError(
                f"retries for call {name!r} must be an int >= 0, got {retries!r}."
            )
        self.name = name
        self.func = func
        self.type: str | None = call_type
        self.retries = retries
        self.retry_if = retry_if
        self.runtime = "inline"
        self.cache = cache
        self._cache_prefix: str | None = None

    def cache_prefix(self) -> str:
        if self._cache_prefix is None:
            digest = _digest.sha256(
                f"{self.type}\0{self.name}\0{code_hash(self.func)}".encode()
            ).hexdigest()
            self._cache_prefix = digest[:32] + ":"
        return self._cache_prefix


def _context(name: str) -> ExecutionContext:
    ctx = current_execution.get()
    if ctx is None:
        raise KitaruContextError(
            f"{name!r} was called outside a running flow. Call it from a @flow function's "
            "body or from a checkpoint, and start the flow with .run(...)."
        )
    return ctx


def durable_call(
    func: Callable[..., T],
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    name: str,
    call_type: str = LLM_CALL,
    retries: int = 0,
    retry_if: RetryPredicate | None = None,
    call_id: str | None = None,
    cache: bool | None = False,
) -> T:
    """Run ``func(*args, **kwargs)`` as a durable call (see the module docstring)."""
    ctx = _context(name)
    spec = DurableCallSpec(
        name, func, call_type=call_type, retries=retries, retry_if=retry_if, cache=cache
    )
    call_kwargs = dict(kwargs or {})
    if current_checkpoint.get() is not None:
        inline: T = _run_inline(ctx, spec, args, call_kwargs)
        return inline
    assigned = ctx.assign_call_id(name, call_id)
    result: T = ctx.call_checkpoint(spec, args, call_kwargs, assigned)
    return result


def durable_call_async(
    func: Callable[..., Awaitable[T]],
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    name: str,
    call_type: str = LLM_CALL,
    retries: int = 0,
    retry_if: RetryPredicate | None = None,
    call_id: str | None = None,
    cache: bool | None = False,
) -> Awaitable[T]:
    """The ``async`` form: ``func`` returns an awaitable; await what this returns.

    Like an async checkpoint, the call id is taken and the memo consulted when
    this is *called* (in body order), not when the result is awaited; awaited
    calls may run side by side (``asyncio.gather``), so they are marked
    concurrent: their recorded outputs are reused on resume in whatever order
    they finished.
    """
    ctx = _context(name)
    spec = DurableCallSpec(
        name, func, call_type=call_type, retries=retries, retry_if=retry_if, cache=cache
    )
    call_kwargs = dict(kwargs or {})
    if current_checkpoint.get() is not None:
        return _run_inline_async(ctx, spec, args, call_kwargs)
    from kitaru._runtime.execution import NOT_RECORDED

    assigned = ctx.assign_call_id(name, call_id)
    ctx.mark_concurrent(assigned)
    found = ctx.begin_call(spec, assigned)

    async def run() -> T:
        if found is not NOT_RECORDED:
            recorded: T = found
            return recorded
        with ctx.checkpoint_span(spec, assigned):
            result: T = await ctx.finish_call_async(spec, args, call_kwargs, assigned)
        return result

    return run()


def _should_retry(spec: DurableCallSpec, attempt: int, exc: Exception) -> bool:
    return attempt <= spec.retries and (spec.retry_if is None or spec.retry_if(exc))


def _run_inline(
    ctx: ExecutionContext, spec: DurableCallSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    attempt = 0
    while True:
        attempt += 1
        try:
            return spec.func(*args, **kwargs)
        except Exception as exc:
            if not _should_retry(spec, attempt, exc):
                raise
            ctx.check_cancelled()
            ctx.cancel_event.wait(retry_backoff(attempt))


async def _run_inline_async(
    ctx: ExecutionContext, spec: DurableCallSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    import asyncio

    attempt = 0
    while True:
        attempt += 1
        try:
            value = spec.func(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            return value
        except Exception as exc:
            if not _should_retry(spec, attempt, exc):
                raise
            ctx.check_cancelled()
            await asyncio.sleep(retry_backoff(attempt))


def current_call_id() -> str | None:
    """The call id of the checkpoint or durable call running here, else None."""
    frame = current_checkpoint.get()
    return None if frame is None else frame.call_id


def current_attempt() -> int | None:
    """The running call's attempt number in this run (1-based), else None."""
    frame = current_checkpoint.get()
    return None if frame is None else frame.attempt


def replay_model_override() -> str | None:
    """The model a replay's ``model`` override sets for the running call, if any.

    Applies to a flow-scope LLM call, and to calls made inside an ``llm_call``
    checkpoint whose call has an override.
    """
    ctx = current_execution.get()
    frame = current_checkpoint.get()
    if ctx is None or frame is None or ctx.replay is None:
        return None
    return ctx.replay.models.get(frame.call_id)


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` value), for latencies."""
    return round((time.perf_counter() - started) * 1000.0, 3)
