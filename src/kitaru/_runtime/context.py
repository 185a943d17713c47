"""What is running right now: the current execution and the current checkpoint.

Context variables (not thread-locals) so that the values follow the flow body
into threads and tasks that copy the context, and never leak between
executions running side by side in one process.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitaru._runtime.events import Lane
    from kitaru._runtime.execution import ExecutionContext
    from kitaru._store import ArtifactRecord


@dataclass(slots=True)
class CheckpointFrame:
    """The checkpoint call whose function is running in this context.

    ``metadata`` (from ``kitaru.log``) and ``saves`` (from ``kitaru.save``)
    are written together with the call's result, in the same transaction.
    """

    exec_id: str
    call_id: str
    name: str
    attempt: int
    metadata: dict[str, Any] = field(default_factory=dict)
    saves: list[ArtifactRecord] = field(default_factory=list)
    #: Events of this attempt (``kitaru.progress``, ``kitaru.events``): see _runtime/events.
    events: Lane | None = None


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
