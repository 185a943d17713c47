"""Human-in-the-loop waits: pause a flow body until input arrives.

While the runner waits (up to the wait's ``timeout``) input wakes it at once:
through an in-process event when the input is given in this process, or a
short poll of the store when it comes from another one. After ``timeout`` the
runner lets go: its thread ends, the execution stays ``waiting`` and holds no
lease, thread or process. Input given later resumes it (in the process that
gave it, or by a ``kitaru worker``), and the re-run body finds the answer
recorded under the same wait id.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kitaru._store import ExecutionStatus, StaleOwnerError, WaitStatus
from kitaru.errors import KitaruUsageError, KitaruWaitAbortedError

if TYPE_CHECKING:
    from kitaru._runtime.execution import ExecutionContext
    from kitaru._store.records_extra import WaitRecord

#: How often a live runner looks for input given by another process.
POLL_SECONDS = 0.1

_events: dict[tuple[str, str], threading.Event] = {}
_events_lock = threading.Lock()
#: Executions whose runner in this process should let go at its wait right away.
_let_go: set[str] = set()


class WaitSuspended(BaseException):
    """The runner let go of a waiting execution (its wait timed out); not a failure."""


def wake(exec_id: str, wait_id: str) -> None:
    """Input arrived in this process: wake the runner waiting for it, if it is here."""
    with _events_lock:
        event = _events.get((exec_id, wait_id))
    if event is not None:
        event.set()


def let_go(exec_id: str) -> None:
    """Ask this process's runner of ``exec_id`` to release its wait now, not at ``timeout``.

    For a process about to exit (the CLI after answering a wait): the
    execution stays ``waiting`` with no runner, exactly as after a timeout,
    and input given later resumes it. Applies to the wait the runner is at, or
    the next one it reaches; ``keep`` withdraws the request.
    """
    with _events_lock:
        _let_go.add(exec_id)
        events = [event for (owner, _), event in _events.items() if owner == exec_id]
    for event in events:
        event.set()


def keep(exec_id: str) -> None:
    """Withdraw a ``let_go`` request that no wait has used yet."""
    with _events_lock:
        _let_go.discard(exec_id)


def _letting_go(exec_id: str) -> bool:
    with _events_lock:
        return exec_id in _let_go


def type_adapter(schema: Any) -> Any:
    """A pydantic TypeAdapter for ``schema`` (None for a plain continue gate)."""
    if schema is None:
        return None
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(schema)
    except Exception as exc:
        raise KitaruUsageError(
            f"wait(schema={schema!r}) is not a type Kitaru can validate input against: "
            f"{exc}. Use bool, int, str, dict, a Pydantic model, list[Model], ..."
        ) from None


def to_json(adapter: Any, value: Any) -> Any:
    return None if adapter is None else adapter.dump_python(value, mode="json")


def _pickle_schema(schema: Any) -> bytes | None:
    if schema is None:
        return None
    import cloudpickle

    try:
        return bytes(cloudpickle.dumps(schema))
    except Exception:  # the JSON schema still describes it
        return None


def _check_arguments(timeout: Any, question: Any, metadata: Any) -> None:
    """``wait()``'s plain arguments, refused before anything is recorded."""
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 <= timeout < float("inf")
    ):
        raise KitaruUsageError(f"wait(timeout=...) must be seconds >= 0 or None, got {timeout!r}.")
    if question is not None and not isinstance(question, str):
        raise KitaruUsageError(
            f"wait(question=...) must be a string or None, got {type(question).__name__}."
        )
    if metadata is None:
        return
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise KitaruUsageError(
            "wait(metadata=...) must be a dict with string keys or None, got "
            f"{type(metadata).__name__}: {metadata!r:.80}."
        )
    try:
        json.dumps(dict(metadata))
    except (TypeError, ValueError) as exc:
        raise KitaruUsageError(
            f"wait(metadata=...) is not JSON-serializable ({exc}). Pass plain data: str, "
            "numbers, bools, lists and dicts of them."
        ) from None


def wait_in_body(
    ctx: ExecutionContext,
    *,
    schema: Any,
    name: str | None,
    question: str | None,
    timeout: float | None,
    metadata: dict[str, Any] | None,
) -> Any:
    _check_arguments(timeout, question, metadata)
    adapter = type_adapter(schema)
    wait_id = ctx.assign_wait_id(name)
    recorded = ctx.recorded_wait(wait_id)
    if recorded is None or recorded.status is WaitStatus.PENDING:
        from kitaru._store.records_extra import WaitRecord

        record = WaitRecord(
            exec_id=ctx.exec_id,
            wait_id=wait_id,
            status=WaitStatus.PENDING,
            created_at=time.time(),
            name=name,
            question=question,
            json_schema=None if adapter is None else adapter.json_schema(),
            schema_pickle=_pickle_schema(schema),
            metadata=dict(metadata or {}),
            timeout=timeout,
        )
        try:
            recorded = ctx.backend.store.open_wait(record, fence=ctx.record.fence)
        except StaleOwnerError as exc:
            raise ctx.lost(exc) from None
        except Exception as exc:
            ctx.backend_failed(exc, f"record wait {wait_id!r}")
        if recorded.status is WaitStatus.PENDING:
            with ctx.backend_op(f"wait for the answer to wait {wait_id!r}"):
                recorded = _block(ctx, wait_id, timeout)
    return _outcome(ctx, recorded, adapter)


def _block(ctx: ExecutionContext, wait_id: str, timeout: float | None) -> WaitRecord:
    from kitaru._runtime.execution import CancelledError

    store = ctx.backend.store
    key = (ctx.exec_id, wait_id)
    event = threading.Event()
    with _events_lock:
        _events[key] = event
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if _letting_go(ctx.exec_id):
                remaining = 0.0
            if remaining is not None and remaining <= 0:
                if store.release_waiting(ctx.exec_id, wait_id, fence=ctx.record.fence):
                    keep(ctx.exec_id)
                    raise WaitSuspended(f"Execution {ctx.exec_id} released at wait {wait_id!r}")
                # Not released: answered just now (read below), or no longer ours.
                status = store.get_status(ctx.exec_id)
                if status is not ExecutionStatus.WAITING:
                    raise CancelledError(f"Execution {ctx.exec_id} is {status} while waiting.")
                remaining = 0.0
            pause = POLL_SECONDS if remaining is None else min(POLL_SECONDS, remaining)
            event.wait(pause)
            ctx.check_cancelled()
            current = store.get_wait(ctx.exec_id, wait_id)
            if current is not None and current.status is not WaitStatus.PENDING:
                if not store.continue_after_wait(ctx.exec_id, fence=ctx.record.fence):
                    raise CancelledError(
                        f"Execution {ctx.exec_id} was cancelled or taken over while waiting."
                    )
                return current
    finally:
        with _events_lock:
            if _events.get(key) is event:
                del _events[key]


def _outcome(ctx: ExecutionContext, wait: WaitRecord, adapter: Any) -> Any:
    if wait.status is WaitStatus.ABORTED:
        raise KitaruWaitAbortedError(
            f"Wait {wait.wait_id!r} of execution {ctx.exec_id} was aborted.",
            exec_id=ctx.exec_id,
            wait=wait.wait_id,
        )
    return None if adapter is None else adapter.validate_python(wait.value)
