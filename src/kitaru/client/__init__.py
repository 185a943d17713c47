"""``kitaru.client``: read and control executions from code."""

from kitaru._store import ExecutionStatus

__all__ = ["ExecutionStatus"]
