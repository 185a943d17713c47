"""What the client returns: plain, read-only views of stored executions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kitaru._runtime.execution import SAVE_CALL_TYPE
from kitaru._store import (
    ArtifactRecord,
    AttemptRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
    LogRecord,
    WaitRecord,
    WaitStatus,
)
from kitaru.errors import FailureOrigin

if TYPE_CHECKING:
    from kitaru._backend import Backend
    from kitaru.replay import ReplaySubmission


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class ArtifactRef:
    """A stored value: a checkpoint output, flow inputs/result or a saved artifact."""

    artifact_id: str
    name: str
    kind: str
    type: str | None
    serializer: str
    size: int
    exec_id: str | None
    call_id: str | None
    created_at: datetime | None
    tags: list[str]
    uri: str | None
    #: SHA-256 of the stored bytes, and the class they hold (None for plain JSON/bytes);
    #: both describe a value without loading (for a pickled one: running) it.
    sha256: str
    type_path: str | None
    _backend: Backend = field(repr=False, compare=False)

    @classmethod
    def from_record(cls, record: ArtifactRecord, backend: Backend) -> ArtifactRef:
        return cls(
            artifact_id=record.id,
            name=record.name,
            kind=record.kind,
            type=record.type,
            serializer=record.serializer,
            size=record.size,
            exec_id=record.exec_id,
            call_id=record.call_id,
            created_at=_dt(record.created_at),
            tags=list(record.tags),
            uri=record.uri,
            sha256=record.sha256,
            type_path=record.type_path,
            _backend=backend,
        )

    def load(self) -> Any:
        """The stored value (``KitaruBackendError`` if it is missing or corrupted)."""
        return self._backend.load_artifact(self.artifact_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact_id": self.artifact_id,
            "name": self.name,
            "kind": self.kind,
            "type": self.type,
            "serializer": self.serializer,
            "size": self.size,
            "exec_id": self.exec_id,
            "call_id": self.call_id,
            "created_at": _iso(self.created_at),
            "tags": self.tags,
            "uri": self.uri,
            "sha256": self.sha256,
            "type_path": self.type_path,
        }


@dataclass(frozen=True)
class CheckpointAttempt:
    attempt: int
    run: int
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    exception_type: str | None
    message: str | None
    traceback: str | None

    @classmethod
    def from_record(cls, record: AttemptRecord) -> CheckpointAttempt:
        return cls(
            attempt=record.attempt,
            run=record.run,
            status=record.status,
            started_at=_dt(record.started_at),
            ended_at=_dt(record.ended_at),
            exception_type=record.exception_type,
            message=record.message,
            traceback=record.traceback,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "run": self.run,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "exception_type": self.exception_type,
            "message": self.message,
            "traceback": self.traceback,
        }


@dataclass(frozen=True)
class CheckpointCall:
    """One checkpoint call of an execution, with its attempts and output."""

    name: str
    call_id: str
    status: CallStatus
    type: str | None
    runtime: str
    started_at: datetime | None
    ended_at: datetime | None
    attempts: list[CheckpointAttempt]
    artifacts: list[ArtifactRef]
    metadata: dict[str, Any]
    source_exec_id: str | None
    error: dict[str, Any] | None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def output(self) -> ArtifactRef | None:
        return next((a for a in self.artifacts if a.kind == "output"), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "call_id": self.call_id,
            "status": self.status.value,
            "type": self.type,
            "runtime": self.runtime,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "duration": self.duration,
            "attempts": [a.to_dict() for a in self.attempts],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "metadata": self.metadata,
            "source_exec_id": self.source_exec_id,
            "error": self.error,
        }


@dataclass(frozen=True)
class LogEntry:
    """One captured line: printed output or a logging record."""

    id: int
    exec_id: str
    call_id: str | None
    checkpoint: str | None
    timestamp: datetime | None
    stream: str
    level: str | None
    logger: str | None
    message: str

    @classmethod
    def from_record(cls, record: LogRecord) -> LogEntry:
        return cls(
            id=record.id or 0,
            exec_id=record.exec_id,
            call_id=record.call_id,
            checkpoint=record.checkpoint,
            timestamp=_dt(record.ts),
            stream=record.stream,
            level=record.level,
            logger=record.logger,
            message=record.message,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "exec_id": self.exec_id,
            "call_id": self.call_id,
            "checkpoint": self.checkpoint,
            "timestamp": _iso(self.timestamp),
            "stream": self.stream,
            "level": self.level,
            "logger": self.logger,
            "message": self.message,
        }


@dataclass(frozen=True)
class PendingWait:
    """A ``kitaru.wait()`` an execution is paused at."""

    exec_id: str
    wait_id: str
    name: str | None
    question: str | None
    schema: dict[str, Any] | None
    metadata: dict[str, Any]
    since: datetime | None
    timeout: float | None

    @classmethod
    def from_record(cls, record: WaitRecord) -> PendingWait:
        return cls(
            exec_id=record.exec_id,
            wait_id=record.wait_id,
            name=record.name,
            question=record.question,
            schema=record.json_schema,
            metadata=dict(record.metadata),
            since=_dt(record.created_at),
            timeout=record.timeout,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "exec_id": self.exec_id,
            "wait_id": self.wait_id,
            "name": self.name,
            "question": self.question,
            "schema": self.schema,
            "metadata": self.metadata,
            "since": _iso(self.since),
            "timeout": self.timeout,
        }


@dataclass(frozen=True)
class FailureInfo:
    origin: FailureOrigin
    message: str | None
    exception_type: str | None
    traceback: str | None
    checkpoint: str | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FailureInfo:
        return cls(
            origin=FailureOrigin(data.get("origin", FailureOrigin.UNKNOWN.value)),
            message=data.get("message"),
            exception_type=data.get("exception_type"),
            traceback=data.get("traceback"),
            checkpoint=data.get("checkpoint"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin.value,
            "message": self.message,
            "exception_type": self.exception_type,
            "traceback": self.traceback,
            "checkpoint": self.checkpoint,
        }


@dataclass(frozen=True)
class Execution:
    """A stored execution and its checkpoint calls."""

    exec_id: str
    flow_name: str
    status: ExecutionStatus
    stack: str
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    metadata: dict[str, Any]
    original_exec_id: str | None
    config: dict[str, Any]
    failure: FailureInfo | None
    checkpoints: list[CheckpointCall]
    run_count: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    pending_waits: list[PendingWait] = field(default_factory=list)

    @property
    def pending_wait(self) -> PendingWait | None:
        """The wait this execution is paused at (the first, if several), else None."""
        return self.pending_waits[0] if self.pending_waits else None

    @property
    def is_orphaned(self) -> bool:
        """Running, but its runner stopped renewing its lease (crashed or killed)."""
        return (
            self.status is ExecutionStatus.RUNNING
            and self.lease_expires_at is not None
            and self.lease_expires_at < datetime.now(tz=UTC)
        )

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def replay(self, *, at: str, **options: Any) -> ReplaySubmission:
        """A new execution from ``at`` on (see ``KitaruClient().executions.replay``)."""
        from kitaru.client._client import KitaruClient

        return KitaruClient().executions.replay(self.exec_id, at=at, **options)

    @classmethod
    def from_records(
        cls,
        record: ExecutionRecord,
        calls: list[CallRecord],
        attempts: list[AttemptRecord],
        backend: Backend,
        waits: list[WaitRecord] | None = None,
    ) -> Execution:
        by_call: dict[str, list[CheckpointAttempt]] = {}
        for attempt in attempts:
            by_call.setdefault(attempt.call_id, []).append(CheckpointAttempt.from_record(attempt))
        checkpoints = [
            CheckpointCall(
                name=call.name,
                call_id=call.call_id,
                status=call.status,
                type=call.type,
                runtime=call.runtime,
                started_at=_dt(call.started_at),
                ended_at=_dt(call.ended_at),
                attempts=by_call.get(call.call_id, []),
                artifacts=[ArtifactRef.from_record(call.artifact, backend)]
                if call.artifact
                else [],
                metadata=dict(call.metadata),
                source_exec_id=call.source_exec_id,
                error=call.error,
            )
            for call in calls
            if call.type != SAVE_CALL_TYPE  # flow-scope saves: artifacts, not checkpoints
        ]
        return cls(
            exec_id=record.id,
            flow_name=record.flow_name,
            status=record.status,
            stack=record.stack,
            created_at=_dt(record.created_at),
            started_at=_dt(record.started_at),
            ended_at=_dt(record.ended_at),
            metadata=dict(record.metadata),
            original_exec_id=record.original_exec_id,
            config=dict(record.config),
            failure=FailureInfo.from_dict(record.failure) if record.failure else None,
            checkpoints=checkpoints,
            run_count=record.run_count,
            lease_owner=record.lease_owner,
            lease_expires_at=_dt(record.lease_expires_at),
            pending_waits=[
                PendingWait.from_record(w)
                for w in waits or ()
                if w.status is WaitStatus.PENDING and record.status is ExecutionStatus.WAITING
            ],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "exec_id": self.exec_id,
            "flow_name": self.flow_name,
            "status": self.status.value,
            "stack": self.stack,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "duration": self.duration,
            "metadata": self.metadata,
            "original_exec_id": self.original_exec_id,
            "config": self.config,
            "failure": None if self.failure is None else self.failure.to_dict(),
            "checkpoints": [c.to_dict() for c in self.checkpoints],
            "run_count": self.run_count,
            "is_orphaned": self.is_orphaned,
            "pending_waits": [w.to_dict() for w in self.pending_waits],
        }
