"""What is running right now: the current execution and the current checkpoint.

Context variables (not thread-locals) so that the values follow the flow body
into threads and tasks that copy the context, and never leak between
executions running side by side in one process.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitaru._runtime.events import Lane
    from kitaru._runtime.execution import ExecutionContext
    from kitaru._store import ArtifactRecord


class CheckpointFrame:
    """The checkpoint call whose function is running in this context.

    ``metadata`` (from ``kitaru.log``) and ``saves`` (from ``kitaru.save``)
    are written together with the call's result, in the same transaction.
    ``events`` holds the events of this attempt (``kitaru.progress``,
    ``kitaru.events``): see _runtime/events. A plain class: building a dataclass
    costs ~1 ms at import.
    """

    __slots__ = ("attempt", "call_id", "events", "exec_id", "metadata", "name", "saves")

    def __init__(
        self,
        exec_id: str,
        call_id: str,
        name: str,
        attempt: int,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.exec_id, self.call_id, self.name, self.attempt = exec_id, call_id, name, attempt
        self.metadata: dict[str, Any] = {} if metadata is None else metadata
        self.saves: list[ArtifactRecord] = []
        self.events: Lane | None = None

    def __repr__(self) -> str:
        return f"CheckpointFrame({self.exec_id!r}, {self.call_id!r}, attempt={self.attempt})"


current_execution: ContextVar[ExecutionContext | None] = ContextVar(
    "kitaru_current_execution", default=None
)
current_checkpoint: ContextVar[CheckpointFrame | None] = ContextVar(
    "kitaru_current_checkpoint", default=None
)


def current_execution_id() -> str | None:
    """The id of the execution whose flow body or checkpoint is running here, else None."""
    ctx = current_execution.get()
    return None if ctx is None else ctx.exec_id


def is_replay() -> bool:
    """True while running an execution created by a replay."""
    ctx = current_execution.get()
    return ctx is not None and ctx.record.original_exec_id is not None
