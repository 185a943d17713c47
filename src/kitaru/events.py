"""``kitaru.events``: publish events from a running checkpoint; watch them elsewhere.

Inside a ``@checkpoint`` function::

    kitaru.progress("Collecting notes", percent=0.25, documents=3)
    kitaru.events.publish("training.batch.completed", {"batch": 1}, message="First batch")

Each live run of a checkpoint function also publishes ``kitaru.checkpoint.started``
and then ``kitaru.checkpoint.returned`` or ``kitaru.checkpoint.failed``. The events
of one run share a ``correlation_id`` and are numbered by ``index``. Read them,
after the fact or live, with ``KitaruClient().executions.events(exec_id)``.

Events are written in the background, in batches (publishing never waits for the
store unless ``flush=True``), and are all durable before the execution's end is
recorded. Calls answered from the memo, the cache or a replay run no function
and publish nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kitaru._runtime import events as _events
from kitaru._runtime.events import FAILED as CHECKPOINT_FAILED_KIND
from kitaru._runtime.events import PROGRESS as CHECKPOINT_PROGRESS_KIND
from kitaru._runtime.events import RETURNED as CHECKPOINT_RETURNED_KIND
from kitaru._runtime.events import STARTED as CHECKPOINT_STARTED_KIND
from kitaru._runtime.events import progress


def publish(
    kind: str,
    payload: Mapping[str, Any] | None = None,
    *,
    message: str | None = None,
    correlation_id: str | None = None,
    index: int | None = None,
    flush: bool = False,
) -> None:
    """Publish an event of the running checkpoint.

    ``kind`` names what happened (not one of ``cursor, end, error, gap, system``);
    ``payload`` lands under the event's ``data`` key and ``message`` under
    ``message``. ``index`` (>= the next free one) overrides the automatic
    numbering; ``correlation_id`` files the event under another group.
    ``flush=True`` waits (up to 2 s) until the event is durable.
    Outside a checkpoint: ``KitaruContextError``; bad arguments: ``KitaruUsageError``.
    """
    _events.publish(
        kind, payload, message=message, correlation_id=correlation_id, index=index, flush=flush
    )


def flush(timeout: float = 2.0) -> bool:
    """Wait until every event this process published so far is durable.

    Works anywhere (not only in a checkpoint). False if ``timeout`` seconds
    passed first or the store refused some of them.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
        from kitaru.errors import KitaruUsageError

        raise KitaruUsageError(
            f"events.flush(timeout=...) must be a number of seconds >= 0, got {timeout!r}."
        )
    return _events.flush(float(timeout))


__all__ = [
    "CHECKPOINT_FAILED_KIND",
    "CHECKPOINT_PROGRESS_KIND",
    "CHECKPOINT_RETURNED_KIND",
    "CHECKPOINT_STARTED_KIND",
    "flush",
    "progress",
    "publish",
]
