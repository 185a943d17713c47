"""``kitaru.wait()``: pause the flow body until a person (or another system) answers."""

from __future__ import annotations

from typing import Any

from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru._runtime.waits import wait_in_body
from kitaru.errors import KitaruContextError

#: How long the runner holds a wait (woken at once by an answer) before letting go.
DEFAULT_TIMEOUT_SECONDS = 600.0


def wait(
    *,
    schema: Any = None,
    name: str | None = None,
    question: str | None = None,
    timeout: float | None = None,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """Wait for input, validated against ``schema`` and returned as that type.

    ``schema=None`` is a plain continue gate (returns None). The execution's
    status is ``waiting`` until input arrives through
    ``KitaruClient().executions.input(...)`` or ``kitaru executions input``.
    Within ``timeout`` seconds (None: the default, 600) the runner wakes at once;
    after it, the runner lets go (no thread or process is held) and the execution
    resumes by itself when the input comes. A wait reached again (in a loop) asks
    again: its id is numbered (``name``, ``name:2``, ...) and input by name answers
    the pending one. An aborted wait raises ``KitaruWaitAbortedError``.
    """
    ctx = current_execution.get()
    if ctx is None:
        raise KitaruContextError(
            "kitaru.wait() was called outside a running flow; call it in the body of a "
            "@flow function started with .run(...)."
        )
    frame = current_checkpoint.get()
    if frame is not None:
        raise KitaruContextError(
            f"kitaru.wait() was called inside checkpoint {frame.name!r}; waits belong in the "
            "flow body, between checkpoints."
        )
    if timeout is None:  # 0.21: None is the default, not "hold the runner forever"
        timeout = DEFAULT_TIMEOUT_SECONDS
    return wait_in_body(
        ctx, schema=schema, name=name, question=question, timeout=timeout, metadata=metadata
    )
