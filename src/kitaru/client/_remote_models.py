"""The client's models rebuilt from a server's JSON (the ``to_dict()`` of each model).

Every ``from_*`` here is the inverse of the model's ``to_dict``: a model read
through a server equals the one read from the store, and prints the same JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from kitaru._store import CallStatus, ExecutionStatus
from kitaru.client._models import (
    ArtifactRef,
    CheckpointAttempt,
    CheckpointCall,
    Execution,
    FailureInfo,
    FrozenExecutionSpec,
    LogEntry,
    PendingWait,
)
from kitaru.client._time_models import PendingSleep

if TYPE_CHECKING:
    from kitaru.client._client import KitaruClient


def _dt(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _failure(data: Any) -> FailureInfo | None:
    return None if data is None else FailureInfo.from_dict(data)


def artifact(data: dict[str, Any], client: KitaruClient | None) -> ArtifactRef:
    return ArtifactRef(
        artifact_id=data["artifact_id"],
        name=data["name"],
        kind=data.get("kind"),
        save_type=data.get("save_type", ""),
        producing_call=data.get("producing_call"),
        metadata=dict(data.get("metadata") or {}),
        direction=data.get("direction", "output"),
        input_type=data.get("input_type"),
        role=data.get("role", "output"),
        type=data.get("type"),
        serializer=data.get("serializer", ""),
        size=data.get("size", 0),
        exec_id=data.get("exec_id"),
        call_id=data.get("call_id"),
        created_at=_dt(data.get("created_at")),
        tags=list(data.get("tags") or []),
        uri=data.get("uri"),
        sha256=data.get("sha256") or "",
        type_path=data.get("type_path"),
        _client=client,
    )


def attempt(data: dict[str, Any]) -> CheckpointAttempt:
    return CheckpointAttempt(
        attempt_id=data["attempt_id"],
        status=ExecutionStatus(data["status"]),
        started_at=_dt(data.get("started_at")),
        ended_at=_dt(data.get("ended_at")),
        metadata=dict(data.get("metadata") or {}),
        failure=_failure(data.get("failure")),
        attempt=data.get("attempt", 1),
        run=data.get("run", 1),
        exception_type=data.get("exception_type"),
        message=data.get("message"),
        traceback=data.get("traceback"),
    )


def checkpoint(data: dict[str, Any], client: KitaruClient | None) -> CheckpointCall:
    return CheckpointCall(
        call_id=data["call_id"],
        name=data["name"],
        status=ExecutionStatus(data["status"]),
        started_at=_dt(data.get("started_at")),
        ended_at=_dt(data.get("ended_at")),
        metadata=dict(data.get("metadata") or {}),
        original_call_id=data.get("original_call_id"),
        parent_call_ids=list(data.get("parent_call_ids") or []),
        failure=_failure(data.get("failure")),
        attempts=[attempt(a) for a in data.get("attempts") or []],
        artifacts=[artifact(a, client) for a in data.get("artifacts") or []],
        checkpoint_type=data.get("checkpoint_type"),
        checkpoint_origin=data.get("checkpoint_origin", "user"),
        adapter=data.get("adapter"),
        adapter_checkpoint_kind=data.get("adapter_checkpoint_kind"),
        replay_input_slots=list(data.get("replay_input_slots") or []),
        replay_output_slots=list(data.get("replay_output_slots") or []),
        call_status=CallStatus(data.get("call_status", "completed")),
        runtime=data.get("runtime", "inline"),
        source_exec_id=data.get("source_exec_id"),
        error=data.get("error"),
        inputs=[artifact(a, client) for a in data.get("inputs") or []],
    )


def pending_wait(data: dict[str, Any]) -> PendingWait:
    return PendingWait(
        wait_id=data["wait_id"],
        name=data["name"],
        question=data.get("question"),
        schema=data.get("schema"),
        metadata=dict(data.get("metadata") or {}),
        entered_waiting_at=_dt(data.get("entered_waiting_at")),
        exec_id=data.get("exec_id", ""),
        timeout=data.get("timeout"),
    )


def log_entry(data: dict[str, Any]) -> LogEntry:
    return LogEntry(
        message=data["message"],
        level=data.get("level"),
        timestamp=data.get("timestamp"),
        source=data.get("source"),
        checkpoint_name=data.get("checkpoint_name"),
        module=data.get("module"),
        filename=data.get("filename"),
        lineno=data.get("lineno"),
        id=data.get("id", 0),
        exec_id=data.get("exec_id", ""),
        call_id=data.get("call_id"),
        stream=data.get("stream", "stdout"),
        logger=data.get("logger"),
    )


def execution(data: dict[str, Any], client: KitaruClient | None) -> Execution:
    """From the full (``to_dict``) JSON of an execution."""
    waits = [pending_wait(w) for w in data.get("pending_waits") or []]
    config = dict(data.get("config") or {})
    return Execution(
        exec_id=data["exec_id"],
        flow_id=data.get("flow_id"),
        flow_name=data.get("flow_name"),
        status=ExecutionStatus(data["status"]),
        started_at=_dt(data.get("started_at")),
        ended_at=_dt(data.get("ended_at")),
        stack_name=data.get("stack_name"),
        metadata=dict(data.get("metadata") or {}),
        status_reason=data.get("status_reason"),
        failure=_failure(data.get("failure")),
        pending_wait=None
        if data.get("pending_wait") is None
        else pending_wait(data["pending_wait"]),
        frozen_execution_spec=FrozenExecutionSpec.from_config(config),
        original_exec_id=data.get("original_exec_id"),
        checkpoints=[checkpoint(c, client) for c in data.get("checkpoints") or []],
        artifacts=[artifact(a, client) for a in data.get("artifacts") or []],
        project_id=data.get("project_id"),
        project_name=data.get("project_name"),
        created_at=_dt(data.get("created_at")),
        config=config,
        run_count=data.get("run_count", 0),
        lease_owner=data.get("lease_owner"),
        lease_expires_at=_dt(data.get("lease_expires_at")),
        pending_waits=waits,
        pending_sleep=None
        if data.get("pending_sleep") is None
        else PendingSleep.from_dict(data["pending_sleep"]),
        parent_exec_id=data.get("parent_exec_id"),
        children=list(data.get("children") or []),
        idempotency_key=data.get("idempotency_key"),
        schedule_name=data.get("schedule_name"),
        schedule_slot=_parse_dt(data.get("schedule_slot")),
        _client=client,
    )


def _parse_dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
