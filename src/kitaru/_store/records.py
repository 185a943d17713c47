"""Plain records passed between the store and the layers above it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from kitaru.errors import KitaruStateError


class ExecutionStatus(StrEnum):
    """Lifecycle of an execution."""

    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in _FINISHED

    @property
    def is_successful(self) -> bool:
        return self is ExecutionStatus.COMPLETED


_FINISHED = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)


class CallStatus(StrEnum):
    """Status of one checkpoint call."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    #: Output taken from another execution through the cross-run cache.
    CACHED = "cached"
    #: Output taken from the source execution of a replay.
    REUSED = "reused"

    @property
    def has_output(self) -> bool:
        return self in WITH_OUTPUT


#: Statuses of calls with an output a later run reuses. A ``RecordedCall``'s plain-text
#: status is found in it too (``CallStatus`` is a StrEnum).
WITH_OUTPUT = frozenset({CallStatus.COMPLETED, CallStatus.CACHED, CallStatus.REUSED})


class StaleOwnerError(KitaruStateError):
    """A runner tried to write to an execution it no longer owns.

    The execution was cancelled, or another process took it over after this
    runner's lease expired (its fence moved on). Nothing was written.
    """


#: The ``kind`` of an artifact ``kitaru.save`` wrote in a checkpoint.
SAVED_KIND = "saved"


@dataclass(slots=True)
class ArtifactRecord:
    """A stored value: inline bytes or a blob, and what wrote it."""

    id: str
    exec_id: str | None
    call_id: str | None
    name: str
    kind: str
    serializer: str
    size: int
    sha256: str
    created_at: float
    type: str | None = None
    type_path: str | None = None
    inline_data: bytes | None = None
    uri: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CallRecord:
    """One checkpoint call of an execution, as stored."""

    exec_id: str
    call_id: str
    seq: int
    name: str
    runtime: str
    status: CallStatus
    type: str | None = None
    artifact_id: str | None = None
    cache_key: str | None = None
    source_exec_id: str | None = None
    attempts: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    started_at: float | None = None
    ended_at: float | None = None
    concurrent: bool = False
    #: Set when the call completed on its first attempt: that attempt's run (the
    #: attempt itself is not stored as a row; see ``Store.attempts_of``).
    run: int | None = None
    #: The call's arguments, packed (``kitaru._store.call_inputs``); None without any.
    inputs: str | None = None
    #: The output artifact, joined in when calls are loaded.
    artifact: ArtifactRecord | None = None


class RecordedCall(NamedTuple):
    """A recorded call as a resumed run of the body needs it (``Store.recorded_calls``).

    Only what the memo, the divergence checks and loading the output read: a
    resumed run of a long execution loads thousands of these, and a tuple of
    plain values costs a fraction of a ``CallRecord`` with its ``ArtifactRecord``
    (no JSON columns decoded, and the garbage collector stops tracking it).
    ``CallRecord`` (with ``Store.calls``) is the full record.
    """

    call_id: str
    seq: int
    name: str
    #: A ``CallStatus`` value (plain text: ``CallStatus`` compares equal to it).
    status: str
    #: As the driver gives it (SQLite: 0 or 1).
    concurrent: bool | int
    attempts: int
    #: The output artifact's columns (None when the call has no output).
    artifact_id: str | None
    artifact_name: str | None
    serializer: str | None
    type_path: str | None
    sha256: str | None
    inline_data: bytes | None
    uri: str | None
    #: For an output kept in its call row (no ``sha256``): the CRC-32 of its bytes.
    crc32: int | None = None

    @classmethod
    def of(cls, call: CallRecord) -> RecordedCall:
        """The same from a full record (a server too old to send these reads ``calls``)."""
        out = call.artifact
        return cls(
            call.call_id,
            call.seq,
            call.name,
            call.status.value,
            call.concurrent,
            call.attempts,
            None if out is None else out.id,
            None if out is None else out.name,
            None if out is None else out.serializer,
            None if out is None else out.type_path,
            None if out is None else out.sha256,
            None if out is None else out.inline_data,
            None if out is None else out.uri,
        )


@dataclass(slots=True)
class ExecutionRecord:
    """One execution of a flow, as stored."""

    id: str
    flow_name: str
    flow_ref: dict[str, Any]
    status: ExecutionStatus
    stack: str
    config: dict[str, Any]
    created_at: float
    metadata: dict[str, Any] = field(default_factory=dict)
    inputs_artifact_id: str | None = None
    result_artifact_id: str | None = None
    failure: dict[str, Any] | None = None
    original_exec_id: str | None = None
    replay_plan: dict[str, Any] | None = None
    started_at: float | None = None
    ended_at: float | None = None
    run_count: int = 0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    fence: int = 0
    #: The execution whose body started this one as a child flow.
    parent_exec_id: str | None = None
    #: The caller's ``execution_id=`` when it was not a UUID (the id is derived from it).
    idempotency_key: str | None = None
    #: The schedule and slot (epoch seconds) that started it.
    schedule_name: str | None = None
    schedule_slot: float | None = None
    #: Flow-level retries used of the frozen ``retries`` budget (see ``note_flow_retry``).
    flow_retries: int = 0


class WaitStatus(StrEnum):
    PENDING = "pending"
    ANSWERED = "answered"
    ABORTED = "aborted"
    #: A later run of the body reached another wait instead (it took another branch).
    SUPERSEDED = "superseded"


class SuspensionStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"


#: Built on first use, in :mod:`kitaru._store.records_extra` (a plain run needs none).
EXTRA_RECORDS = frozenset(
    {
        "AttemptRecord",
        "LogRecord",
        "ScheduleFireRecord",
        "ScheduleRecord",
        "SuspensionRecord",
        "WaitRecord",
    }
)

if TYPE_CHECKING:
    pass


def __getattr__(name: str) -> Any:
    if name in EXTRA_RECORDS:
        from kitaru._store import records_extra

        return getattr(records_extra, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
