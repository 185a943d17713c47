"""``FlowHandle``: the caller's view of one execution."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, cast

from kitaru._runtime.driver import get_live, runner_failure
from kitaru._runtime.interrupt import ExecutionInterrupted, interrupted
from kitaru._store import ExecutionRecord, ExecutionStatus
from kitaru.errors import (
    FailureOrigin,
    KitaruBackendError,
    KitaruBackendExecutionError,
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
    from kitaru._runtime.driver import LiveExecution

# Cross-process waiting polls the store, starting fast and backing off.
_POLL_START = 0.01
_POLL_MAX = 0.5
_PROMPT_CHECK = 0.25


class FlowHandle:
    """Returned by ``my_flow.run(...)``; ``wait()`` blocks for the result."""

    def __init__(
        self, exec_id: str, *, backend: Backend | None = None, live: LiveExecution | None = None
    ) -> None:
        if backend is None:
            from kitaru._backend import get_backend
            from kitaru.client._remote_client import connected_backend

            # Connected to a Kitaru server: read the execution through it.
            remote = connected_backend()
            backend = get_backend() if remote is None else cast("Backend", remote)
        self._exec_id = exec_id
        self._backend = backend
        #: The run this process started for the handle (``.run()``): once it ended with
        #: a result, wait() returns it as a Future would, without reading the store.
        self._live = live

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

        If the runner itself fails (the store or the disk under it), this raises
        ``KitaruBackendExecutionError`` (a ``KitaruBackendError``). Ctrl-C stops an
        execution running in this process (cancelled, resumable at once) and
        raises a ``KeyboardInterrupt`` that, uncaught, exits with 130 and one line.
        """
        _validate_timeout(timeout)
        from kitaru._runtime.context import current_checkpoint, current_execution

        ctx = current_execution.get()
        if ctx is not None and current_checkpoint.get() is None and timeout is None:
            # In a flow body: a durable join (the parent lets go while a long child runs).
            from kitaru._runtime.sleeps import join_child

            join_child(ctx, self._exec_id)
            return self._finished_value(self._read())
        try:
            return self._wait(timeout)
        except ExecutionInterrupted:
            raise
        except KeyboardInterrupt:
            raise interrupted(self._backend, self._exec_id) from None

    def _wait(self, timeout: float | None) -> Any:
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        delay = _POLL_START
        prompted: set[str] = set()
        while True:
            live = get_live(self._exec_id) or self._live
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
            record = self._read()
            if record.status.is_finished:
                return self._finished_value(record)
            runner_error = self._runner_error(record)
            if runner_error is not None:
                raise runner_error
            if timeout is not None and deadline is not None and time.monotonic() >= deadline:
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
        record = self._read()
        runner_error = None if record.status.is_finished else self._runner_error(record)
        if runner_error is not None:
            raise runner_error
        if not record.status.is_finished:
            raise KitaruStateError(
                f"Execution {self._exec_id} is still {record.status.value}; "
                "use .wait() to block until it finishes."
            )
        return self._finished_value(record)

    def _read(self) -> ExecutionRecord:
        try:
            return self._backend.store.require_execution(self._exec_id)
        except KitaruBackendError:
            error = self._runner_error(None)
            if error is not None:
                raise error from None  # the store fails; the runner's failure says why
            raise

    def _runner_error(self, record: ExecutionRecord | None) -> KitaruExecutionError | None:
        return runner_failure_error(self._exec_id, record)

    def _finished_value(self, record: ExecutionRecord) -> Any:
        if record.status is ExecutionStatus.COMPLETED:
            if record.result_artifact_id is None:
                return None
            return self._backend.load_artifact(record.result_artifact_id, from_script=True)
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


def runner_failure_error(
    exec_id: str, record: ExecutionRecord | None
) -> KitaruExecutionError | None:
    """The error of this process's last runner of ``exec_id`` if it failed itself.

    For waiters whose ``record`` (None: unreadable) is not finished: the runner's
    failure may not be in the store (it could not write it), and nothing else
    would ever end their wait.
    """
    failed = runner_failure(exec_id)
    if failed is None or failed.failure is None:
        return None
    if record is not None and record.fence != failed.fence:
        return None  # another process took it over since: wait for that run
    if failed.failure_recorded:
        return failure_error(
            exec_id, failed.flow_name or "?", ExecutionStatus.FAILED, failed.failure
        )
    # Still "running" in the store: retry refuses it (it is not failed), resume continues it.
    note = (
        "\n(The store could not record this failure: it still lists the execution as "
        f"running. Once the store works again, continue it with `kitaru executions resume "
        f"{exec_id}`.)"
    )
    return failure_error(
        exec_id,
        failed.flow_name or "?",
        ExecutionStatus.FAILED,
        failed.failure,
        note=note,
        retry_hint=False,
    )


def _interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty() and not os.environ.get("CI")


def execution_error(record: ExecutionRecord) -> KitaruExecutionError:
    """The typed error for a failed or cancelled execution record."""
    return failure_error(record.id, record.flow_name, record.status, record.failure or {})


def failure_error(
    exec_id: str,
    flow_name: str,
    status: ExecutionStatus,
    failure: dict[str, Any],
    *,
    note: str = "",
    retry_hint: bool = True,
) -> KitaruExecutionError:
    """The typed error for an execution that ended (or stopped) with ``failure``.

    ``retry_hint``: end with 0.21's retry command (not for a failure the store could not
    record: the execution is still running there, and retry refuses it)."""
    origin = FailureOrigin(failure.get("origin", FailureOrigin.UNKNOWN.value))
    checkpoint = failure.get("checkpoint")
    exc_type = failure.get("exception_type")
    exc_message = failure.get("message")
    if status is ExecutionStatus.CANCELLED:
        if failure.get("reason") == "interrupted":
            text = (
                f"Execution {exec_id} of flow {flow_name!r} was cancelled: {exc_message}. "
                f"Continue it with `kitaru executions resume {exec_id}`."
            )
        else:
            text = f"Execution {exec_id} of flow {flow_name!r} was cancelled."
        return KitaruExecutionError(
            text, exec_id=exec_id, status=status.value, failure_origin=origin
        )
    if origin is FailureOrigin.BACKEND:
        # The runner's store or disk failed, not the flow: nothing completed is lost.
        message = (
            f"Execution {exec_id} of flow {flow_name!r} stopped because Kitaru's store or "
            f"artifact store failed: {exc_message}{note}\n"
            "Completed checkpoints are kept. Fix the cause (e.g. free disk space, make the "
            "store reachable)"
            + (f"; `kitaru executions resume {exec_id}` also continues it." if retry_hint else ".")
        )
    else:
        where = f" in checkpoint {checkpoint!r}" if checkpoint else ""
        message = (
            f"Execution {exec_id} of flow {flow_name!r} failed{where}: "
            f"{exc_type}: {exc_message}{note}"
        )
    hint = format_recovery_hint(exec_id, status=status) if retry_hint else None
    if hint is not None and str(exc_type).rpartition(".")[2] == "KitaruWaitAbortedError":
        # The abort is recorded: a retry meets it again where the body asks.
        hint = (
            "An aborted wait stays aborted (a retry meets the same answer). To ask again, "
            f"replay it from a checkpoint before the wait: `kitaru executions replay {exec_id} "
            "--at CHECKPOINT`, or start a new run."
        )
    if hint is not None:
        message = f"{message}\n{hint}"  # 0.21: the message ends with the retry command
    error = execution_error_from_failure(
        message, exec_id=exec_id, status=status, origin=origin, failure=failure
    )
    if origin is not FailureOrigin.BACKEND:
        return error
    return KitaruBackendExecutionError(
        message,
        exec_id=exec_id,
        status=status,
        failure_origin=origin,
        checkpoint=error.checkpoint,
        exception_type=error.exception_type,
        exception_message=error.exception_message,
        traceback=error.traceback,
    )
