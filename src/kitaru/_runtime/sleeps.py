"""Durable sleeps and child joins: a flow body waits for time or for a child execution.

The wake-up time of a sleep is written the first time the body reaches it
(``kitaru_suspensions``), so a resumed body never restarts the clock: it sleeps
only what is left. A wait shorter than the release threshold happens in place
(the runner keeps its thread and lease, a cancel stops it at once). A longer one
releases the execution: status ``waiting``, no lease, thread or process held,
and ``kitaru worker`` resumes it when the sleep is over or the child has ended
(``Store.orphaned`` lists it as due). The re-run body gets past the point then.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from kitaru import _environ
from kitaru._runtime.waits import POLL_SECONDS, WaitSuspended
from kitaru._store import ExecutionStatus, StaleOwnerError, SuspensionStatus
from kitaru.errors import KitaruUsageError

if TYPE_CHECKING:
    from kitaru._runtime.execution import ExecutionContext
    from kitaru._store.records_extra import SuspensionRecord

#: The wait release threshold: ``kitaru.wait()``'s default timeout, after which a
#: waiting runner lets go. Sleeps and child waits longer than it release too.
DEFAULT_RELEASE_AFTER = 600.0
ENV_RELEASE_AFTER = "KITARU_SLEEP_RELEASE_AFTER"

#: Sleep ids assigned so far, per run of a body (the context lives as long as the run).
_assigned: weakref.WeakKeyDictionary[ExecutionContext, dict[str, Any]] = weakref.WeakKeyDictionary()
_assigned_lock = threading.Lock()


def release_after() -> float:
    """Seconds a sleep or child wait may take in place before the runner lets go."""
    raw = _environ.get(ENV_RELEASE_AFTER)
    if raw is None or not raw.strip():
        return DEFAULT_RELEASE_AFTER
    try:
        value = float(raw)
    except ValueError:
        raise KitaruUsageError(
            f"{ENV_RELEASE_AFTER}={raw!r} is not a number of seconds; set it to e.g. 600."
        ) from None
    if value < 0:
        raise KitaruUsageError(f"{ENV_RELEASE_AFTER} must be >= 0 seconds, got {raw!r}.")
    return value


def seconds_of(duration: Any) -> float:
    """``duration`` (seconds or a ``timedelta``) as non-negative seconds."""
    # A timedelta means datetime is imported already: import kitaru does not pay for it.
    datetime = sys.modules.get("datetime")
    if datetime is not None and isinstance(duration, datetime.timedelta):
        seconds: float = duration.total_seconds()
    elif isinstance(duration, int | float) and not isinstance(duration, bool):
        seconds = float(duration)
    else:
        raise KitaruUsageError(
            f"kitaru.sleep() takes seconds (int or float) or a datetime.timedelta, "
            f"got {duration!r}."
        )
    if not seconds >= 0 or seconds == float("inf"):
        raise KitaruUsageError(
            f"kitaru.sleep() needs a finite duration >= 0 seconds, got {duration!r}."
        )
    if seconds > MAX_SLEEP_SECONDS:
        raise KitaruUsageError(
            f"kitaru.sleep() takes at most {MAX_SLEEP_SECONDS:.0f} seconds (1,000 years: "
            f"its wake-up time must be a date), got {duration!r}."
        )
    return seconds


#: The longest sleep: its wake-up time stays a date every reader can show (year < 9999).
MAX_SLEEP_SECONDS = 1000 * 365.25 * 86400


def _sleep_id(ctx: ExecutionContext, name: str | None) -> str:
    """The sleep's name, or sleep / sleep:2 / ... in the order the body reaches them."""
    with _assigned_lock:
        state = _assigned.setdefault(ctx, {"count": 0, "ids": set()})
        ids: set[str] = state["ids"]
        if name is not None:
            if not isinstance(name, str) or not name or len(name) > 255:
                raise KitaruUsageError(
                    f"kitaru.sleep(name=...) must be a non-empty string of at most 255 "
                    f"characters, got {name!r}."
                )
            sleep_id = name
        else:
            state["count"] += 1
            sleep_id = "sleep" if state["count"] == 1 else f"sleep:{state['count']}"
            while sleep_id in ids:
                state["count"] += 1
                sleep_id = f"sleep:{state['count']}"
        if sleep_id in ids:
            raise KitaruUsageError(
                f"Sleep {sleep_id!r} is reached twice in execution {ctx.exec_id}. "
                "Give each sleep a distinct name=."
            )
        ids.add(sleep_id)
        return sleep_id


def _recorded(ctx: ExecutionContext, suspension_id: str) -> SuspensionRecord | None:
    """What an earlier run recorded here: read once per run (a resumed body passes its
    sleeps with no write but the one that marks the current sleep done)."""
    with _assigned_lock:
        state = _assigned.setdefault(ctx, {"count": 0, "ids": set()})
        loaded: dict[str, SuspensionRecord] | None = state.get("recorded")
    if loaded is None:
        with ctx.backend_op(f"read the sleeps of execution {ctx.exec_id}"):
            found = ctx.backend.store.suspensions(ctx.exec_id)
        loaded = {s.suspension_id: s for s in found}
        with _assigned_lock:
            state["recorded"] = loaded
    return loaded.get(suspension_id)


def _open(ctx: ExecutionContext, record: SuspensionRecord) -> SuspensionRecord:
    known = _recorded(ctx, record.suspension_id) if ctx.run > 1 else None
    if known is not None:
        return known
    try:
        return ctx.backend.store.open_suspension(record, fence=ctx.record.fence)
    except StaleOwnerError as exc:
        raise ctx.lost(exc) from None
    except Exception as exc:
        ctx.backend_failed(exc, f"record {record.kind} {record.suspension_id!r}")


def _end(ctx: ExecutionContext, suspension_id: str) -> None:
    try:
        ctx.backend.store.end_suspension(ctx.exec_id, suspension_id, fence=ctx.record.fence)
    except StaleOwnerError as exc:
        raise ctx.lost(exc) from None
    except Exception as exc:
        ctx.backend_failed(exc, f"record the end of {suspension_id!r}")


def release(ctx: ExecutionContext, what: str) -> None:
    """Let go of the execution here (no lease, no thread); raises ``WaitSuspended``."""
    with ctx.backend_op(f"release execution {ctx.exec_id} at {what}"):
        released = ctx.backend.store.release_suspended(ctx.exec_id, fence=ctx.record.fence)
    if not released:
        raise ctx.lost(f"Execution {ctx.exec_id} was cancelled or taken over at {what}.")
    raise WaitSuspended(f"Execution {ctx.exec_id} released at {what}")


def sleep_in_body(ctx: ExecutionContext, seconds: float, name: str | None) -> None:
    sleep_id = _sleep_id(ctx, name)
    now = time.time()
    from kitaru._store.records_extra import SuspensionRecord

    stored = _open(
        ctx,
        SuspensionRecord(
            exec_id=ctx.exec_id,
            suspension_id=sleep_id,
            kind="sleep",
            status=SuspensionStatus.PENDING,
            created_at=now,
            name=name,
            wake_at=now + seconds,
        ),
    )
    if stored.status is SuspensionStatus.DONE:
        return  # an earlier run of the body slept here already
    assert stored.wake_at is not None
    remaining = stored.wake_at - time.time()
    if remaining > release_after():
        release(ctx, f"sleep {sleep_id!r}")
    while remaining > 0:
        # The cancel event is set by a cancel in this process and by the lease
        # keeper when the store says the execution was cancelled elsewhere.
        ctx.cancel_event.wait(remaining)
        ctx.check_cancelled()
        remaining = stored.wake_at - time.time()
    _end(ctx, sleep_id)


def join_child(ctx: ExecutionContext, child_id: str) -> None:
    """Block the parent body until child ``child_id`` has ended (released if long)."""
    store = ctx.backend.store
    suspension_id = f"join:{child_id}"
    from kitaru._store.records_extra import SuspensionRecord

    stored = _open(
        ctx,
        SuspensionRecord(
            exec_id=ctx.exec_id,
            suspension_id=suspension_id,
            kind="child",
            status=SuspensionStatus.PENDING,
            created_at=time.time(),
            child_exec_id=child_id,
        ),
    )
    if stored.status is SuspensionStatus.DONE and not _retry_ended_child(ctx, child_id):
        return
    _resume_orphaned_child(ctx, child_id)
    deadline = time.monotonic() + release_after()
    from kitaru._runtime.driver import get_live

    while True:
        with ctx.backend_op(f"read the status of child execution {child_id}"):
            status = store.get_status(child_id)
        if status is None or status.is_finished:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            # Released: the worker resumes the parent once the child has ended (a
            # child that ends in the meantime makes it due at once).
            release(ctx, f"the wait for child execution {child_id}")
        live = get_live(child_id)
        pause = min(remaining, POLL_SECONDS)
        if live is not None:
            live.done.wait(pause)  # a child running here wakes us as it ends
        else:
            ctx.cancel_event.wait(pause)
        ctx.check_cancelled()
    _end(ctx, suspension_id)


def _retry_ended_child(ctx: ExecutionContext, child_id: str) -> bool:
    """A parent run again after it saw its child fail or be cancelled (``retry``) runs
    the child again too, here, from where it stopped, instead of failing on its recorded
    end again. True if it did."""
    from kitaru._runtime import control
    from kitaru.errors import KitaruStateError

    with ctx.backend_op(f"read child execution {child_id}"):
        child = ctx.backend.store.get_execution(child_id)
    if child is None or child.status not in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED):
        return False
    with contextlib.suppress(KitaruStateError):  # another process retried it first
        control.retry(ctx.backend, child_id, cancelled_too=True)
    return True


def _resume_orphaned_child(ctx: ExecutionContext, child_id: str) -> None:
    """A child whose runner is gone (the parent's process died with it) continues here,
    as the parent does, rather than waiting for a ``kitaru worker``."""
    from kitaru._runtime import control
    from kitaru._runtime.driver import get_live
    from kitaru.errors import KitaruError

    if get_live(child_id) is not None:
        return  # running in this process
    with ctx.backend_op(f"read child execution {child_id}"):
        child = ctx.backend.store.get_execution(child_id)
    if child is None or child.status not in (ExecutionStatus.RUNNING, ExecutionStatus.WAITING):
        return
    expired = child.lease_expires_at is None or child.lease_expires_at < time.time()
    if not (expired or control.runner_is_gone(child)):
        return  # its runner is alive elsewhere
    with contextlib.suppress(KitaruError):  # taken first, waiting for input, code missing
        control.resume(ctx.backend, child_id)


def waiting_reason(record_status: ExecutionStatus, pending: list[SuspensionRecord]) -> str | None:
    """``sleeping`` or ``waiting_for_child`` for a waiting execution at such a point."""
    if record_status is not ExecutionStatus.WAITING or not pending:
        return None
    return "sleeping" if pending[-1].kind == "sleep" else "waiting_for_child"
