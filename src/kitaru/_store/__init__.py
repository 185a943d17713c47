"""Metadata store: executions, checkpoint calls and attempts, the artifact index.

The records are plain dataclasses; the SQLAlchemy-backed ``Store`` is imported
on first use so that ``import kitaru`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kitaru._store.records import (
    ArtifactRecord,
    AttemptRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
    LogRecord,
    RecordedCall,
    ScheduleFireRecord,
    ScheduleRecord,
    StaleOwnerError,
    SuspensionRecord,
    SuspensionStatus,
    WaitRecord,
    WaitStatus,
)

if TYPE_CHECKING:
    from kitaru._store.store import Store, forget_stores, get_store

_LAZY = {"Store", "forget_stores", "get_store"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from kitaru._store import store

        return getattr(store, name)
    raise AttributeError(f"module 'kitaru._store' has no attribute {name!r}")


__all__ = [
    "ArtifactRecord",
    "AttemptRecord",
    "CallRecord",
    "CallStatus",
    "ExecutionRecord",
    "ExecutionStatus",
    "LogRecord",
    "RecordedCall",
    "ScheduleFireRecord",
    "ScheduleRecord",
    "StaleOwnerError",
    "Store",
    "SuspensionRecord",
    "SuspensionStatus",
    "WaitRecord",
    "WaitStatus",
    "forget_stores",
    "get_store",
]
