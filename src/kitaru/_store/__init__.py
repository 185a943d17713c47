"""Metadata store: executions, checkpoint calls and attempts, the artifact index."""

from kitaru._store.records import (
    ArtifactRecord,
    AttemptRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
)
from kitaru._store.store import Store, forget_stores, get_store

__all__ = [
    "ArtifactRecord",
    "AttemptRecord",
    "CallRecord",
    "CallStatus",
    "ExecutionRecord",
    "ExecutionStatus",
    "Store",
    "forget_stores",
    "get_store",
]
