"""``FlowHandle``: the caller's view of one execution."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from kitaru._runtime.driver import get_live
from kitaru._store import ExecutionRecord, ExecutionStatus
from kitaru.errors import (
    KitaruExecutionError,
    KitaruStateError,
    KitaruTimeoutError,
    KitaruUsageError,
    execution_error_from_failure,
    execution_not_found,
    format_recovery_hint,
)

if TYPE_CHECKING:
    from kitaru._backend import Backend

# Cross-process waiting polls the store, starting fast and backing off.
_POLL_START = 0.01
_POLL_MAX = 0.5
_PROMPT_CHECK = 0.25


class FlowHandle:
    """Returned by ``my_flow.run(...)``; ``wait()`` blocks for the result."""

    def __init__(self, exec_id: str, *, backend: Backend | None = None) -> None:
        if backend is None:
            from kitaru._backend import get_backend

            backend = get_backend()
        self._exec_id = exec_id
        self._backend = backend

    def __repr__(self) -> str:
        return f"FlowHandle(exec_id={self._exec_id!r})"

    @property
    def exec_id(self) -> str:
        """The execution id (a UUID string)."""
        return self._exec_id

    @property
    def status(self) -> ExecutionStatus:
        """The execution's status, read from the store on every access."""
        status = self._backend.store.get_status(self._exec_id)
        if status is None:
            raise execution_not_found(self._exec_id, "it is not in the store.")
        return status

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the execution finishes; return its result or raise its error.

        A ``waiting`` execution keeps being waited for (input resumes it). In a
        terminal (stdin is a TTY, not CI) the pending wait is offered for an
        answer right there. ``timeout`` (seconds) elapsed → ``KitaruTimeoutError``;
        the execution itself is not touched and keeps running. A ``timeout``
        that is not a positive, finite number of seconds → ``KitaruUsageError``.
        """
        _validate_timeout(timeout)
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        delay = _POLL_START
        prompted: set[str] = set()
        while True:
            live = get_live(self._exec_id)
            if live is not None:
                # Woken by the runner itself, no polling.
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if _interactive():
                    # Look at the status now and then, to offer the prompt while the
                    # runner still waits (it may hold on for the wait's whole timeout).
                    remaining = (
                        _PROMPT_CHECK if remaining is None else min(remaining, _PROMPT_CHECK)
                    )
                if live.done.wait(remaining) and live.has_result:
                    return live.result
            record = self._backend.store.require_execution(self._exec_id)
            if record.status.is_finished:
                return self._finished_value(record)
            if timeout is not None and time.monotonic() >= started + timeout:
                raise KitaruTimeoutError(
                    exec_id=self._exec_id,
                    timeout_seconds=timeout,
                    elapsed_seconds=time.monotonic() - started,
                    last_status=record.status,
                )
            if record.status is ExecutionStatus.WAITING and _interactive():
                from kitaru.client._prompt import prompt_pending_waits

                asked = prompt_pending_waits(self._exec_id, skip=prompted)
                prompted |= asked
                if asked:
                    continue
            if get_live(self._exec_id) is None:
                pause = delay if deadline is None else min(delay, deadline - time.monotonic())
                time.sleep(max(0.0, pause))
                delay = min(delay * 2, _POLL_MAX)

    async def wait_async(self, timeout: float | None = None) -> Any:
        """``wait()`` for async callers: awaits without blocking the event loop."""
        import asyncio

        return await asyncio.to_thread(self.wait, timeout)

    def get(self) -> Any:
        """The result if the execution finished; ``KitaruStateError`` while it runs."""
        record = self._backend.store.require_execution(self._exec_id)
        if not record.status.is_finished:
            raise KitaruStateError(
                f"Execution {self._exec_id} is still {record.status.value}; "
                "use .wait() to block until it finishes."
            )
        return self._finished_value(record)

    def _finished_value(self, record: ExecutionRecord) -> Any:
        if record.status is ExecutionStatus.COMPLETED:
            if record.result_artifact_id is None:
                return None
            return self._backend.load_artifact(record.result_artifact_id)
        raise execution_error(record)


def _validate_timeout(timeout: object) -> None:
    """``wait(timeout=...)`` takes None or a positive, finite number of seconds."""
    if timeout is None:
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise KitaruUsageError(
            f"wait(timeout=...) takes a positive, finite number of seconds or None, got "
            f"{timeout!r}."
        )


def _interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty() and not os.environ.get("CI")


def execution_error(record: ExecutionRecord) -> KitaruExecutionError:
    """The typed error for a failed or cancelled execution record."""
    failure = record.failure or {}
    if record.status is ExecutionStatus.CANCELLED:
        message = f"Execution {record.id} of flow {record.flow_name!r} was cancelled."
    else:
        checkpoint = failure.get("checkpoint")
        where = f" in checkpoint {checkpoint!r}" if checkpoint else ""
        message = (
            f"Execution {record.id} of flow {record.flow_name!r} failed{where}: "
            f"{failure.get('exception_type')}: {failure.get('message')}"
        )
    hint = format_recovery_hint(record.id, status=record.status)
    if hint is not None:
        message = f"{message}\n{hint}"
    return execution_error_from_failure(
        message, exec_id=record.id, status=record.status, failure=failure
    )
