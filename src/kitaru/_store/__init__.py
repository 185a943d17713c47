"""Metadata store: executions, checkpoint calls and attempts, the artifact index.

The records are plain dataclasses; the SQLAlchemy-backed ``Store`` and the records a
plain run does not need are imported on first use so that ``import kitaru`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kitaru._store.records import (
    EXTRA_RECORDS,
    ArtifactRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
    RecordedCall,
    StaleOwnerError,
    SuspensionStatus,
    WaitStatus,
)

if TYPE_CHECKING:
    from kitaru._store.records_extra import (
        AttemptRecord,
        LogRecord,
        ScheduleFireRecord,
        ScheduleRecord,
        SuspensionRecord,
        WaitRecord,
    )
    from kitaru._store.store import Store, forget_stores, get_store

_LAZY = {"Store", "forget_stores", "get_store"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from kitaru._store import store

        return getattr(store, name)
    if name in EXTRA_RECORDS:
        from kitaru._store import records_extra

        return getattr(records_extra, name)
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
