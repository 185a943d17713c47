"""Records of what a plain run does not touch: failed or retried attempts, waits, logs,
sleeps and child flows, schedules.

Kept apart from :mod:`kitaru._store.records` and loaded on first use (``records``
and ``kitaru._store`` hand them out lazily): building a dataclass costs about a
millisecond at import, which every ``python script.py`` would pay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kitaru._store.records import SuspensionStatus, WaitStatus


@dataclass(slots=True)
class AttemptRecord:
    """A run of a checkpoint call that failed or was retried (a first success is in the call)."""

    exec_id: str
    call_id: str
    attempt: int
    run: int
    status: str
    started_at: float
    ended_at: float | None = None
    exception_type: str | None = None
    message: str | None = None
    traceback: str | None = None


@dataclass(slots=True)
class WaitRecord:
    """A ``kitaru.wait()`` point of an execution and its answer."""

    exec_id: str
    wait_id: str
    status: WaitStatus
    created_at: float
    name: str | None = None
    question: str | None = None
    json_schema: dict[str, Any] | None = None
    schema_pickle: bytes | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    value: Any = None
    answered_at: float | None = None


@dataclass(slots=True)
class LogRecord:
    """A captured log line or stream line of an execution."""

    exec_id: str
    ts: float
    stream: str
    message: str
    call_id: str | None = None
    checkpoint: str | None = None
    level: str | None = None
    logger: str | None = None
    id: int | None = None
    #: The fence of the run that captured it: the lines of a run that lost the execution
    #: (taken over meanwhile) are dropped, as its other writes are refused. Not stored.
    fence: int | None = None


@dataclass(slots=True)
class SuspensionRecord:
    """A point where a flow body waits for time (a sleep) or for a child execution."""

    exec_id: str
    suspension_id: str
    kind: str
    status: SuspensionStatus
    created_at: float
    name: str | None = None
    wake_at: float | None = None
    child_exec_id: str | None = None
    ended_at: float | None = None


@dataclass(slots=True)
class ScheduleRecord:
    """A schedule that starts a flow at the slots of a cron expression."""

    name: str
    flow_name: str
    flow_ref: dict[str, Any]
    cron: str
    timezone: str
    cursor: float
    created_at: float
    inputs: dict[str, Any] = field(default_factory=dict)
    stack: str | None = None
    missed: str = "skip"
    paused: bool = False


@dataclass(slots=True)
class ScheduleFireRecord:
    """A schedule slot claimed by a worker, and the execution it starts."""

    schedule_name: str
    slot: float
    exec_id: str
    claimed_by: str
    claimed_at: float
    #: When the slot's execution was created (None: claimed, not started yet).
    started_at: float | None = None
