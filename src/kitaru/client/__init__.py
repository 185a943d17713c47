"""``kitaru.client``: read and control executions from code."""

from kitaru._store import CallStatus, ExecutionStatus
from kitaru.client._client import ArtifactsAPI, ExecutionsAPI, KitaruClient
from kitaru.client._events import ExecutionEvent
from kitaru.client._models import (
    ArtifactRef,
    CheckpointAttempt,
    CheckpointCall,
    Execution,
    FailureInfo,
    FrozenExecutionSpec,
    LogEntry,
    PendingWait,
    ResolvedConnectionConfig,
    ResolvedExecutionConfig,
)

__all__ = [
    "ArtifactRef",
    "ArtifactsAPI",
    "CallStatus",
    "CheckpointAttempt",
    "CheckpointCall",
    "Execution",
    "ExecutionEvent",
    "ExecutionStatus",
    "ExecutionsAPI",
    "FailureInfo",
    "FrozenExecutionSpec",
    "KitaruClient",
    "LogEntry",
    "PendingWait",
    "ResolvedConnectionConfig",
    "ResolvedExecutionConfig",
]
