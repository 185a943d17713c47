"""Reading an execution's events, after the fact and while it runs.

The reader polls the store for events after its cursor (an event's position
in its execution's stream). It reads the execution's status *before* each
read of events: the runner makes every event durable before it records the
end of a run, so once the status read says "finished", the read of events
that follows holds the last ones and the iterator can stop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kitaru.errors import KitaruBackendError, KitaruUsageError

if TYPE_CHECKING:
    from kitaru._backend import Backend
    from kitaru._store._events import EventRecord

_PAGE = 500
_POLL_MIN = 0.05
_POLL_MAX = 0.5
#: Pauses before reading again after the store failed (``reconnect=True``).
_RECONNECT_BACKOFF = (0.1, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class ExecutionEvent:
    """One event of an execution.

    ``kind`` says what happened; ``payload`` is the event's document (Kitaru's
    own block under ``"kitaru"``, the publisher's ``message`` and ``data``);
    ``correlation_id`` groups the events of one checkpoint run and ``index``
    orders them inside it; ``cursor`` is the position to resume reading after
    (``since=``). ``checkpoint_id`` and ``step_name`` are the call id,
    ``checkpoint_name`` the checkpoint's name.
    """

    exec_id: str
    kind: str
    payload: dict[str, Any]
    correlation_id: str | None
    index: int | None
    cursor: str | None
    checkpoint_id: str | None
    checkpoint_name: str | None
    step_name: str | None
    timestamp: datetime | None = None

    @classmethod
    def from_record(cls, record: EventRecord) -> ExecutionEvent:
        return cls(
            exec_id=record.exec_id,
            kind=record.kind,
            payload=record.payload,
            correlation_id=record.correlation_id,
            index=record.index,
            cursor=str(record.seq),
            checkpoint_id=record.call_id,
            checkpoint_name=record.checkpoint,
            step_name=record.call_id,
            timestamp=datetime.fromtimestamp(record.ts, tz=UTC),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "exec_id": self.exec_id,
            "kind": self.kind,
            "payload": self.payload,
            "correlation_id": self.correlation_id,
            "index": self.index,
            "cursor": self.cursor,
            "checkpoint_id": self.checkpoint_id,
            "checkpoint_name": self.checkpoint_name,
            "step_name": self.step_name,
            "timestamp": None if self.timestamp is None else self.timestamp.isoformat(),
        }


def _strings(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, Iterable):
        raise KitaruUsageError(f"events({what}=...) must be a list of strings, got {value!r}.")
    out = list(values)
    for item in out:
        if not isinstance(item, str) or not item.strip():
            raise KitaruUsageError(f"events({what}=...) must hold non-empty strings, got {item!r}.")
    return [item.strip() for item in out]


def _cursor(since: Any) -> int:
    if since is None:
        return 0
    text = str(since).strip() if isinstance(since, str | int) else ""
    if isinstance(since, bool) or not text.isdigit():
        raise KitaruUsageError(
            f"events(since=...) must be the cursor of an event seen before (its "
            f"`cursor` attribute, a number as text), got {since!r}."
        )
    return int(text)


def iterate_events(
    backend: Backend,
    exec_id: str,
    *,
    kinds: Any = None,
    checkpoint: str | None = None,
    correlation_ids: Any = None,
    since: Any = None,
    reconnect: bool = True,
    follow: bool = True,
) -> Iterator[ExecutionEvent]:
    """Validate the arguments now; the returned iterator reads lazily."""
    kind_list = _strings(kinds, "kinds")
    correlation_list = _strings(correlation_ids, "correlation_ids")
    if checkpoint is not None and (not isinstance(checkpoint, str) or not checkpoint.strip()):
        raise KitaruUsageError(
            f"events(checkpoint=...) must be a checkpoint name or call id, got {checkpoint!r}."
        )
    cursor = _cursor(since)
    backend.store.require_execution(exec_id)
    filters: dict[str, Any] = {
        "kinds": kind_list,
        "checkpoint": checkpoint.strip() if checkpoint else None,
        "correlation_ids": correlation_list,
        "limit": _PAGE,
    }
    return _follow(backend, exec_id, cursor, filters, reconnect=reconnect, follow=follow)


def _follow(
    backend: Backend,
    exec_id: str,
    cursor: int,
    filters: dict[str, Any],
    *,
    reconnect: bool,
    follow: bool,
) -> Iterator[ExecutionEvent]:
    store = backend.store
    poll = _POLL_MIN
    failures = 0
    while True:
        try:
            status = store.get_status(exec_id)
            page = store.events(exec_id, after=cursor, **filters)
        except KitaruBackendError:
            if not reconnect or failures >= len(_RECONNECT_BACKOFF):
                raise
            time.sleep(_RECONNECT_BACKOFF[failures])
            failures += 1
            continue
        failures = 0
        for record in page:
            cursor = record.seq
            yield ExecutionEvent.from_record(record)
        if len(page) == _PAGE:
            continue  # more to read right away
        if not follow or status is None or status.is_finished:
            return  # finished (or deleted): the read after the status held the rest
        poll = _POLL_MIN if page else min(poll * 1.5, _POLL_MAX)
        time.sleep(poll)
