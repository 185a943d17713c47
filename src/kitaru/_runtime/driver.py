"""The execution driver: runs a flow body to an end state and records it.

``run_execution`` is what every launcher calls, in whatever thread or process
the stack provides. It retries the whole body per the frozen ``retries``
setting (each re-run reuses the checkpoints that completed) and always leaves
the execution in a recorded state: completed with a result, or failed with a
failure record. Waiters in this process are woken through ``live``.

When the runner itself fails (the store or the disk under it), the execution is
failed with origin ``backend``, resumable once the cause is fixed; if the store
cannot even take that record, the failure is kept on ``live`` (and reported on
stderr) so that ``FlowHandle.wait()`` raises it instead of waiting forever.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from kitaru._blobs import SerializationError
from kitaru._runtime import events, logcapture, tracing
from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru._runtime.execution import (
    CancelledError,
    ExecutionContext,
    retry_backoff,
)
from kitaru._runtime.failures import (
    backend_failure,
    describe,
    exception_type_name,
    is_backend_error,
    runner_error,
)
from kitaru._runtime.leases import RUNNER_ID, lease_seconds, leases
from kitaru._runtime.waits import WaitSuspended
from kitaru._store import ExecutionRecord, ExecutionStatus
from kitaru.errors import FailureOrigin, KitaruDivergenceError

if TYPE_CHECKING:
    from kitaru._backend import Backend

logger = logging.getLogger("kitaru")


class LiveExecution:
    """An execution running in this process: how to wake its waiters.

    ``fence`` is the fence this process runs the execution under (set by whoever
    starts it). ``failure`` is set when the runner itself failed (store, disk, our
    bug): the failure record it wrote, or tried to write when ``failure_recorded``
    is False. A plain class: building a dataclass costs ~1 ms at import.
    """

    __slots__ = (
        "cancel",
        "done",
        "exec_id",
        "failure",
        "failure_recorded",
        "fence",
        "flow_name",
        "has_result",
        "result",
    )

    def __init__(
        self, exec_id: str, *, fence: int | None = None, flow_name: str | None = None
    ) -> None:
        self.exec_id, self.fence, self.flow_name = exec_id, fence, flow_name
        self.done = threading.Event()
        self.cancel = threading.Event()
        self.result: Any = None
        self.has_result = False
        self.failure: dict[str, Any] | None = None
        self.failure_recorded = False

    def __repr__(self) -> str:
        return f"LiveExecution({self.exec_id!r}, done={self.done.is_set()})"


_live: dict[str, LiveExecution] = {}
_live_lock = threading.Lock()
#: Runs of this process whose runner failed, until the execution runs here again.
_runner_failures: dict[str, LiveExecution] = {}


def register_live(exec_id: str) -> LiveExecution:
    with _live_lock:
        _runner_failures.pop(exec_id, None)
        live = _live.get(exec_id)
        # A cancelled run may still be stopping (a checkpoint finishing its work): the
        # next run gets its own entry, not the old one's cancel flag.
        if live is None or live.done.is_set() or live.cancel.is_set():
            live = LiveExecution(exec_id)
            _live[exec_id] = live
        return live


def get_live(exec_id: str) -> LiveExecution | None:
    with _live_lock:
        return _live.get(exec_id)


def runner_failure(exec_id: str) -> LiveExecution | None:
    """The last run of ``exec_id`` in this process, if its runner itself failed."""
    with _live_lock:
        return _runner_failures.get(exec_id)


def _release_live(live: LiveExecution) -> None:
    live.done.set()
    with _live_lock:
        # Keep only the result-less entry small: waiters already hold a reference.
        if _live.get(live.exec_id) is live:
            del _live[live.exec_id]


def run_execution(
    backend: Backend,
    record: ExecutionRecord,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    live: LiveExecution,
    fresh: bool = False,
) -> None:
    """Run the body of an execution this process has claimed; record the outcome.

    ``record`` must already be running under this process (created by
    ``.run()``/replay, or claimed by resume/retry); ``fresh`` says it was just
    created and has no recorded calls. Never raises.
    """
    store = backend.store
    settings = record.config
    retries = int(settings.get("retries", 0))
    cache_setting = settings.get("cache")
    cache_source = settings.get("sources", {}).get("cache", "default")
    cache_enabled = None if cache_source == "default" else bool(cache_setting)
    leases.hold(record.id, store, record.fence, live.cancel)
    logcapture.install()
    try:
        # Retries an earlier runner used are spent (it may have died during a backoff).
        first = min(record.flow_retries, retries)
        for flow_attempt in range(first, retries + 1):
            if flow_attempt > first:
                if live.cancel.is_set():
                    return
                restarted = store.start_run(
                    record.id, owner=RUNNER_ID, lease_seconds=lease_seconds(), fence=record.fence
                )
                if restarted is None:
                    return  # cancelled or taken over while backing off
                record = restarted
            # A brand-new execution has no calls or waits yet: skip the reads.
            nothing_recorded = fresh and flow_attempt == 0
            replay = None
            if record.replay_plan:
                from kitaru._runtime.replaying import load_directives

                replay = load_directives(backend, record)
            ctx = ExecutionContext(
                backend,
                record,
                run=record.run_count,
                recorded=[] if nothing_recorded else store.recorded_calls(record.id),
                # A replay runs its live part again unless cache=True was asked for.
                cache_enabled=cache_enabled if replay is None else bool(replay.cache),
                replay=replay,
                waits=[] if nothing_recorded else store.waits(record.id),
                cancel_event=live.cancel,
            )
            attributes = {
                "kitaru.exec_id": record.id,
                "kitaru.flow": record.flow_name,
                "kitaru.run": record.run_count,
                "kitaru.stack": record.stack,
            }
            with tracing.span(f"kitaru.execution {record.flow_name}", attributes):
                outcome = _run_body(ctx, func, args, kwargs)
                tracing.annotate(status=outcome.status)
            # Captured lines are durable before the outcome is (readers see them all);
            # likewise the events (a watcher stops once it sees the end): the run's
            # last ones go into the transaction that records the outcome.
            logcapture.flush(ctx)
            last = events.LastEvents(store, events.take_execution(record.id, store))
            try:
                if outcome.ok:
                    _complete(backend, record, outcome.value, live, last)
                    return
                if outcome.suspended:
                    return  # waiting for input with no runner: the record says so already
                if outcome.cancelled:
                    # cancel() already recorded the end; a runner that lost its lease
                    # to another process must not write anything.
                    return
                retryable = outcome.failure is not None and outcome.failure.get("retryable", True)
                if flow_attempt < retries and retryable:
                    logger.warning(
                        "Execution %s failed (%s); re-running the flow body (retry %d of %d).",
                        record.id,
                        outcome.failure and outcome.failure.get("message"),
                        flow_attempt + 1,
                        retries,
                    )
                    last.store_rest()  # before the next run's events
                    # Counted before the backoff: a runner that dies during it leaves the
                    # budget spent for whoever resumes the execution.
                    if not store.note_flow_retry(
                        record.id, used=flow_attempt + 1, fence=record.fence
                    ):
                        return  # cancelled or taken over meanwhile
                    # A cancel during the backoff ends the wait (and the execution) at once.
                    live.cancel.wait(retry_backoff(flow_attempt + 1))
                    continue
                if outcome.failure is not None and outcome.failure["origin"] == _BACKEND:
                    _record_runner_failure(backend, record, outcome.failure, live)
                    return
                store.finish_execution(
                    record.id,
                    status=ExecutionStatus.FAILED,
                    failure=outcome.failure,
                    only_if_status=_RUNNING,
                    fence=record.fence,
                    events=last.for_finish(),
                )
                last.stored()
                return
            finally:
                last.store_rest()
    except BaseException as exc:  # the runner itself failed: record what we can
        # One line, no traceback (users see the error from wait()); details at debug.
        logger.debug("Kitaru's runner for execution %s failed", record.id, exc_info=True)
        if is_backend_error(exc):
            failure = backend_failure(exc, checkpoint=None)
        else:
            failure = _failure(exc, FailureOrigin.RUNTIME, None)
            failure["message"] = f"Kitaru's runner stopped: {exception_type_name(exc)}: {exc}"
        _record_runner_failure(backend, record, failure, live)
    finally:
        leases.release(record.id)
        logcapture.flush()  # captured lines are durable before waiters wake
        # Likewise this execution's events (not every execution's: with many
        # running, a global flush per finished run would be a commit each).
        events.flush_execution(record.id, store)
        _release_live(live)
        if record.parent_exec_id is not None:
            from kitaru._runtime.children import wake_parent

            wake_parent(backend, record.id, record.parent_exec_id)


_RUNNING = (ExecutionStatus.RUNNING,)
_BACKEND = FailureOrigin.BACKEND.value


def _record_runner_failure(
    backend: Backend, record: ExecutionRecord, failure: dict[str, Any], live: LiveExecution
) -> None:
    """Record that the runner itself failed; keep it on ``live`` for waiters either way.

    When the store cannot take the record (e.g. the disk is full), the execution
    stays ``running`` there: say so on stderr, since nothing else will.
    """
    live.failure, live.fence, live.flow_name = failure, record.fence, record.flow_name
    try:
        live.failure_recorded = backend.store.finish_execution(
            record.id,
            status=ExecutionStatus.FAILED,
            failure=failure,
            only_if_status=_RUNNING,
            fence=record.fence,
        )
    except Exception as exc:
        logger.debug("Could not record the failure of execution %s", record.id, exc_info=True)
        stream = sys.__stderr__ or sys.stderr
        if stream is not None:
            what = failure["message"].rstrip(".")
            stream.write(
                f"Kitaru: execution {record.id} stopped: {what}. Recording that failed too "
                f"({describe(exc)}). Once fixed, continue it with "
                f"`kitaru executions resume {record.id}`.\n"
            )
            stream.flush()
    else:
        if not live.failure_recorded:
            return  # cancelled or taken over meanwhile: the store has the truth
    with _live_lock:
        _runner_failures[record.id] = live


class _Outcome:
    """How a run of the body ended."""

    __slots__ = ("cancelled", "failure", "ok", "suspended", "value")

    def __init__(
        self,
        *,
        ok: bool,
        value: Any = None,
        failure: dict[str, Any] | None = None,
        cancelled: bool = False,
        suspended: bool = False,
    ) -> None:
        self.ok, self.value, self.failure = ok, value, failure
        self.cancelled, self.suspended = cancelled, suspended

    @property
    def status(self) -> str:
        if self.ok:
            return "completed"
        return "cancelled" if self.cancelled else "waiting" if self.suspended else "failed"


def _run_body(
    ctx: ExecutionContext,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> _Outcome:
    token = current_execution.set(ctx)
    checkpoint_token = current_checkpoint.set(None)
    try:
        try:
            if inspect.iscoroutinefunction(func):
                import asyncio

                value = asyncio.run(func(*args, **kwargs))
            else:
                value = func(*args, **kwargs)
        except BaseException:
            ctx.settle(body_failed=True)
            raise
        ctx.settle(body_failed=False)
    except WaitSuspended:
        return _Outcome(ok=False, suspended=True)
    except CancelledError as exc:
        return _Outcome(
            ok=False, cancelled=True, failure=_failure(exc, FailureOrigin.RUNTIME, None)
        )
    except KitaruDivergenceError as exc:
        failure = _failure(exc, FailureOrigin.DIVERGENCE, None)
        failure["retryable"] = False
        return _Outcome(ok=False, failure=failure)
    except Exception as exc:
        if ctx.backend_failure is not None:
            # The store or the disk failed under the runtime: whatever the body made of
            # that (re-raised, wrapped, swallowed and failed later), it is not user code.
            return _Outcome(ok=False, failure=backend_failure(ctx.backend_failure, checkpoint=None))
        return _Outcome(
            ok=False, failure=_failure(exc, FailureOrigin.USER_CODE, ctx.failed_checkpoint)
        )
    finally:
        current_checkpoint.reset(checkpoint_token)
        current_execution.reset(token)
    return _Outcome(ok=True, value=value)


def _complete(
    backend: Backend,
    record: ExecutionRecord,
    value: Any,
    live: LiveExecution,
    last: events.LastEvents,
) -> None:
    try:
        result = backend.make_artifact(
            value, exec_id=record.id, call_id=None, name="result", kind="flow_result"
        )
    except SerializationError as exc:
        failure = _failure(exc, FailureOrigin.USER_CODE, None)
        failure["message"] = (
            f"The flow {record.flow_name!r} returned a value Kitaru cannot store: {exc}"
        )
        backend.store.finish_execution(
            record.id,
            status=ExecutionStatus.FAILED,
            failure=failure,
            only_if_status=_RUNNING,
            fence=record.fence,
            events=last.for_finish(),
        )
        last.stored()
        return
    except Exception as exc:
        if is_backend_error(exc):
            what = f"store the result of flow {record.flow_name!r}"
            raise runner_error(record.id, what, exc) from exc
        raise
    finished = backend.store.finish_execution(
        record.id,
        status=ExecutionStatus.COMPLETED,
        result=result,
        only_if_status=_RUNNING,
        fence=record.fence,
        events=last.for_finish(),
    )
    last.stored()
    if finished:
        live.result = value
        live.has_result = True


def _failure(exc: BaseException, origin: FailureOrigin, checkpoint: str | None) -> dict[str, Any]:
    return {
        "origin": origin.value,
        "checkpoint": checkpoint,
        "exception_type": exception_type_name(exc),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
