"""Child flows: ``other_flow.run(...)`` inside a flow body is a durable call of the parent.

The call (type ``flow``) goes through the same memo/record path as a checkpoint:
its recorded output is the child's execution id, so a resumed parent gets the
same child handle back instead of starting a second child. The child's id is
derived from the parent's id and the call id, and the start is idempotent, so
a parent that crashed after starting the child but before recording the call
finds the same child again on resume.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kitaru._runtime.context import current_execution
from kitaru._runtime.idempotency import child_exec_id

if TYPE_CHECKING:
    from kitaru.flow import Flow
    from kitaru.handle import FlowHandle

#: The ``type`` of the call rows that record a child flow's start.
FLOW_CALL_TYPE = "flow"


class _ChildStart:
    """Stands in for a checkpoint: its one "attempt" starts the child, once."""

    def __init__(self, name: str, func: Callable[[], str]) -> None:
        self.name = name
        self.func: Callable[..., Any] = func
        self.type: str | None = FLOW_CALL_TYPE
        self.runtime = "inline"
        self.retries = 0
        self.cache: bool | None = False  # a child is never taken from another execution

    def cache_prefix(self) -> str:  # pragma: no cover - never cached
        return ""


def start_child(
    flow: Flow[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: dict[str, Any],
    max_concurrency: int | None,
) -> FlowHandle:
    from kitaru.handle import FlowHandle

    ctx = current_execution.get()
    assert ctx is not None
    call_id = ctx.assign_call_id(flow.name, None)
    exec_id = child_exec_id(ctx.exec_id, call_id)
    parent = ctx.exec_id

    def start() -> str:
        import uuid

        handle = flow.submit_execution(
            args,
            kwargs,
            options,
            max_concurrency,
            uuid.UUID(exec_id),
            parent_exec_id=parent,
        )
        return handle.exec_id

    spec = _ChildStart(flow.name, start)
    started = ctx.call_checkpoint(spec, (), {}, call_id)
    return FlowHandle(str(started), backend=ctx.backend)


def wake_parent(backend: Any, child: str, parent: str) -> None:
    """A child ended in this process: resume its parent here if it let go waiting for it.

    Best effort (a ``kitaru worker`` resumes it otherwise): only a parent that is
    released at a wait for this very child.
    """
    import logging

    from kitaru._runtime import control
    from kitaru._store import SuspensionStatus

    try:
        joins = [
            s
            for s in backend.store.suspensions(parent)
            if s.kind == "child" and s.child_exec_id == child
        ]
        if joins and joins[-1].status is SuspensionStatus.PENDING:
            control.resume_released(backend, parent)
    except Exception as exc:  # the worker is the safety net
        logging.getLogger("kitaru").debug("Not resuming parent %s here: %s", parent, exc)
