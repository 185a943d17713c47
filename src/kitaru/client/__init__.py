"""``kitaru.client``: read and control executions from code."""

from typing import TYPE_CHECKING

from kitaru._lazy import lazy_getattr
from kitaru._store import CallStatus, ExecutionStatus

if TYPE_CHECKING:
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

#: Loaded on first use: a process that only runs flows reads its server connection
#: (``kitaru.client._remote_config``) without paying for the client and its models.
_LAZY = {
    "ArtifactsAPI": "kitaru.client._client",
    "ExecutionsAPI": "kitaru.client._client",
    "KitaruClient": "kitaru.client._client",
    "ExecutionEvent": "kitaru.client._events",
    "ArtifactRef": "kitaru.client._models",
    "CheckpointAttempt": "kitaru.client._models",
    "CheckpointCall": "kitaru.client._models",
    "Execution": "kitaru.client._models",
    "FailureInfo": "kitaru.client._models",
    "FrozenExecutionSpec": "kitaru.client._models",
    "LogEntry": "kitaru.client._models",
    "PendingWait": "kitaru.client._models",
    "ResolvedConnectionConfig": "kitaru.client._models",
    "ResolvedExecutionConfig": "kitaru.client._models",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


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
