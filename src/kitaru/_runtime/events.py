"""Execution events: checkpoint lifecycle and what checkpoints publish.

Every live attempt of a checkpoint call is one *lane*: its events share a
correlation id and number themselves 0, 1, 2, ... (``index``):
``kitaru.checkpoint.started``, whatever the function publishes
(``kitaru.progress``, ``kitaru.events.publish``), then
``kitaru.checkpoint.returned`` or ``kitaru.checkpoint.failed``. Memoized,
cached and overridden calls run no function and publish nothing.

Cost: the lifecycle events must not add a commit (or a round trip) to a
checkpoint. They are appended to an in-memory queue (a tuple; the payload is
built later) and one background thread per process writes the queue in
batches, as captured logs are written. A returned event whose started event is
still the last one queued for its execution joins it there (one queued item, one
stored row: see ``_store._event_codes``), which is the common case of a short
checkpoint that publishes nothing. ``flush`` makes everything queued so
far durable; the driver calls it before it records the end of a run, so a
reader that sees a finished execution has seen all its events.

Events are observability, not the durable record: a batch the store refuses
is dropped (reported once), never failing the checkpoint.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from kitaru._ids import random_hex
from kitaru._runtime.context import current_checkpoint
from kitaru._store._event_codes import lane_correlation
from kitaru.errors import KitaruContextError, KitaruUsageError

if TYPE_CHECKING:
    from kitaru._runtime.context import CheckpointFrame
    from kitaru._store import Store
    from kitaru._store._events import EventRow

STARTED = "kitaru.checkpoint.started"
PROGRESS = "kitaru.checkpoint.progress"
RETURNED = "kitaru.checkpoint.returned"
FAILED = "kitaru.checkpoint.failed"

#: Names the 0.21 event stream used for its own control frames.
RESERVED_KINDS = frozenset({"cursor", "end", "error", "gap", "system"})
_KIND_MAX = 255
_CORRELATION_MAX = 255

_FLUSH_SECONDS = 0.2
_BATCH = 1000

#: An isolated checkpoint's process continues its parent's lane (see isolated.py).
CORRELATION_ENV = "KITARU_EVENT_CORRELATION_ID"
NEXT_INDEX_ENV = "KITARU_EVENT_NEXT_INDEX"
FENCE_ENV = "KITARU_EVENT_FENCE"

report_logger = logging.getLogger("kitaru.events")

#: Guards every lane's index counter. A lane is seldom shared between threads, so one
#: lock for all costs no waiting, and spares a lock per checkpoint run.
_lanes_lock = threading.Lock()


class Lane:
    """The events of one checkpoint attempt: correlation id and index counter."""

    __slots__ = (
        "_next",
        "call_id",
        "checkpoint",
        "checkpoint_type",
        "correlation_id",
        "exec_id",
        "fence",
        "started_item",
        "store",
    )

    def __init__(
        self,
        store: Store,
        exec_id: str,
        call_id: str,
        checkpoint: str,
        checkpoint_type: str | None,
        *,
        correlation_id: str | None = None,
        next_index: int = 0,
        run_attempt: str | None = None,
        fence: int | None = None,
    ) -> None:
        self.store = store
        self.exec_id = exec_id
        #: The run's fence: its events are stored only while it owns the execution.
        self.fence = fence
        self.call_id = call_id
        self.checkpoint = checkpoint
        self.checkpoint_type = checkpoint_type
        if correlation_id is None:
            # A checkpoint run's own: unique per call and run_attempt ("<run>.<attempt>"),
            # so a store can rebuild it instead of keeping it (see _event_codes).
            suffix = run_attempt if run_attempt is not None else f"x{random_hex(8)}"
            correlation_id = lane_correlation(checkpoint, call_id, suffix)
        self.correlation_id = correlation_id
        self._next = next_index
        #: The queued started event, which the returned event may join (see _Writer).
        self.started_item: list[Any] | None = None

    def reserve(self, index: int | None = None) -> int:
        """The next index, or ``index`` itself when it is not behind the counter."""
        with _lanes_lock:
            if index is None:
                index = self._next
            elif index < self._next:
                raise KitaruUsageError(
                    f"Event index {index} of checkpoint {self.checkpoint!r} is lower than "
                    f"the next free index {self._next} of this checkpoint run; pass "
                    f"index >= {self._next}, or leave index= out to number events in order."
                )
            self._next = index + 1
            return index

    @property
    def next_index(self) -> int:
        return self._next

    def advance_to(self, next_index: int) -> None:
        with _lanes_lock:
            self._next = max(self._next, next_index)


# -- the writer ------------------------------------------------------------------------

#: (lane, kind, fields as JSON text or None, ts, index, correlation id override): a
#: tuple, or a list for a started event, which its returned event may turn into a
#: ``_PAIR`` item in place (then the fields slot holds the returned event's ts).
_Queued = tuple[Lane, str, str | None, float, int, str | None] | list[Any]
#: The kind of a queued started event joined by its returned event.
_PAIR = "kitaru.checkpoint.started+returned"


class _Writer:
    """Queues events and writes them to their store in batches, off the hot path."""

    def __init__(self) -> None:
        # Queued events by execution (and store), each list in publish order: a run's
        # end takes its own in O(1) (take_execution), however many others are queued.
        self._pending: dict[tuple[str, int], list[_Queued]] = {}
        self._count = 0  # events in _pending
        # The condition's own lock, taken directly where nothing waits or is woken:
        # ``with`` on a Condition runs two Python-level calls, twice per checkpoint.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queued = 0
        self._written = 0
        self._failures = 0
        self._flushers = 0  # callers of flush() waiting now: write without delay
        self._thread: threading.Thread | None = None
        self._batch_lock = threading.Lock()

    def put(self, item: _Queued) -> None:
        lane = item[0]
        key = (lane.exec_id, id(lane.store))
        with self._lock:
            queue = self._pending.get(key)
            if queue is None:
                self._pending[key] = [item]
            else:
                queue.append(item)
            self._count += 1
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="kitaru-events", daemon=True
                )
                self._thread.start()
                atexit.register(self.flush, 5.0)
            elif self._count >= _BATCH:
                self._cond.notify_all()

    def join_started(self, lane: Lane, ts: float, index: int) -> bool:
        """Turn the lane's queued started event into a started+returned pair; False if
        it was taken for writing already or anything was queued after it.

        Only the last item of its execution's queue may be joined: the pair is stored
        at the started event's place, so nothing published in between (by this lane or
        another) can end up after its returned event. Joining queues no new item, so
        the counts ``flush`` waits on stay as they are.
        """
        item = lane.started_item
        lane.started_item = None
        if item is None or index != item[4] + 1:
            return False
        with self._lock:
            queue = self._pending.get((lane.exec_id, id(lane.store)))
            if not queue or queue[-1] is not item:
                return False
            item[1], item[2] = _PAIR, ts
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written; False on timeout or a lost batch."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target, failures = self._queued, self._failures
            self._flushers += 1
            try:
                self._cond.notify_all()
                while self._written < target and self._thread is not None:
                    remaining = 1.0 if deadline is None else deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(min(remaining, 1.0))
            finally:
                self._flushers -= 1
            return self._failures == failures

    def _loop(self) -> None:
        while True:
            with self._cond:
                # Gather for a flush interval even when events keep coming: writing as
                # soon as the last batch is done would mean a commit per checkpoint,
                # competing with the checkpoints' own commits. With nothing queued,
                # sleep until something is (a waiting flush() must not make it spin).
                deadline = time.monotonic() + _FLUSH_SECONDS
                while True:
                    if self._count and (self._flushers or self._count >= _BATCH):
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        if self._count:
                            break
                        deadline = time.monotonic() + _FLUSH_SECONDS
                        remaining = _FLUSH_SECONDS
                    self._cond.wait(remaining)
            # Held from taking a batch until it is stored: see take_execution().
            with self._batch_lock:
                with self._cond:
                    queues, self._pending, self._count = self._pending, {}, 0
                batch = [item for queue in queues.values() for item in queue]
                failed = 0
                if batch:
                    failed = _write_batch(batch)
            with self._cond:
                self._written += len(batch)
                self._failures += failed
                self._cond.notify_all()

    def take_execution(self, exec_id: str, store: Store) -> list[EventRow]:
        """Remove and return the events queued for one execution, ready to store.

        The runner stores them in the transaction that records the end of the run
        (a commit less per execution). A batch the writer is storing right now
        may hold earlier events of the same execution: it is stored first, so
        the positions stay in the order the events were published.
        """
        with self._batch_lock, self._cond:
            mine = self._pending.pop((exec_id, id(store)), None)
            if not mine:
                return []
            self._count -= len(mine)
            # Handed over: flush() need not wait for them.
            self._written += len(mine)
            self._cond.notify_all()
        return _rows(mine).get(id(store), (store, []))[1]


def _write_batch(batch: list[_Queued]) -> int:
    """Store a batch, grouped by store; returns how many events were lost."""
    lost = 0
    for store, rows in _rows(batch).values():
        lost += store_rows(store, rows)
    return lost


def store_rows(store: Store, rows: list[EventRow]) -> int:
    """Store ``rows`` in a transaction of their own; returns how many were lost."""
    if not rows:
        return 0
    try:
        store.insert_events(rows)
    except Exception as exc:  # events are best effort; never take a run down
        _report_lost(rows[0].exec_id, len(rows), exc)
        return len(rows)
    return 0


def _rows(batch: list[_Queued]) -> dict[int, tuple[Store, list[EventRow]]]:
    """The stored form of queued events, grouped by store."""
    from kitaru._store._events import EventRow, storable

    by_store: dict[int, tuple[Store, list[EventRow]]] = {}
    # A lane's shared columns, escaped once for all of its events in the batch.
    columns: dict[int, tuple[str | None, str | None, str | None]] = {}
    for lane, kind, fields, ts, index, correlation_id in batch:
        shared = columns.get(id(lane))
        if shared is None:
            shared = columns[id(lane)] = (
                storable(lane.call_id, "call_id"),
                storable(lane.checkpoint, "checkpoint"),
                storable(lane.correlation_id, "correlation_id"),
            )
        returned_ts: float | None = None
        if kind is _PAIR:  # a plain started event joined by its returned one
            kind, returned_ts, fields = STARTED, cast(float, fields), None
        row = EventRow(
            exec_id=lane.exec_id,
            kind=kind if kind in _OWN_KINDS else storable(kind, "kind") or "",
            # JSON from json.dumps is ASCII: nothing in it to escape.
            payload=_payload(lane, kind, fields, correlation_id),
            ts=ts,
            call_id=shared[0],
            checkpoint=shared[1],
            correlation_id=shared[2]
            if correlation_id is None
            else storable(correlation_id, "correlation_id"),
            index=index,
            prepared=True,
            returned_ts=returned_ts,
            fence=lane.fence,
        )
        by_store.setdefault(id(lane.store), (lane.store, []))[1].append(row)
    return by_store


_reported = threading.Event()


def _report_lost(exec_id: str, count: int, error: BaseException) -> None:
    if _reported.is_set():
        report_logger.debug("Could not store %d events of execution %s", count, exec_id)
        return
    _reported.set()
    reason = (str(error).split("\n", 1)[0] or type(error).__name__)[:300]
    report_logger.warning(
        "Kitaru could not store %d events of execution %s (%s: %s); watchers of "
        "`client.executions.events()` will not see them. Check that the store is reachable "
        "and writable. Further failures to store events in this process are not reported.",
        count,
        exec_id,
        type(error).__name__,
        reason,
    )


_STATUS_FIELDS = {
    STARTED: '"status": "started"',
    RETURNED: '"status": "returned"',
}
_OWN_KINDS = frozenset({STARTED, PROGRESS, RETURNED, FAILED})


def _payload(lane: Lane, kind: str, fields: str | None, correlation_id: str | None) -> str:
    """The event's JSON document: Kitaru's own block under "kitaru", then the fields.

    A plain started/returned event is stored without one (``""``): every value of
    its document is in the row's columns, and the reader rebuilds it (see
    ``kitaru._store._events``). Two such events are written per checkpoint, so
    this halves the bytes a checkpoint adds to the store.
    """
    plain = fields is None and correlation_id is None and lane.checkpoint_type is None
    if plain and kind in _STATUS_FIELDS:
        return ""
    meta: dict[str, str] = {
        "source": "kitaru",
        "execution_id": lane.exec_id,
        "checkpoint_id": lane.call_id,
        "checkpoint_name": lane.checkpoint,
        "correlation_id": correlation_id or lane.correlation_id,
    }
    if lane.checkpoint_type is not None:
        meta["checkpoint_type"] = lane.checkpoint_type
    head = '{"kitaru": ' + json.dumps(meta)
    if fields is None:
        fields = _STATUS_FIELDS.get(kind)
    return head + (", " + fields if fields else "") + "}"


_writer = _Writer()


def flush(timeout: float | None = None) -> bool:
    """Make every event queued so far durable; False if that timed out or a batch was lost."""
    return _writer.flush(timeout)


class LastEvents:
    """A run's last events, taken off the queue to be stored with the run's outcome.

    ``for_finish()`` hands them to ``Store.finish_execution(events=...)``; after
    that call succeeds, ``stored()``. Whatever path the run takes instead,
    ``store_rest()`` stores them on their own (the driver calls it last).
    """

    def __init__(self, store: Store, rows: list[EventRow]) -> None:
        self.store = store
        self.rows = rows
        self._done = not rows

    def for_finish(self) -> list[EventRow]:
        return [] if self._done else self.rows

    def stored(self) -> None:
        self._done = True

    def store_rest(self) -> None:
        if not self._done:
            self._done = True
            store_rows(self.store, self.rows)


def take_execution(exec_id: str, store: Store) -> list[EventRow]:
    """The execution's queued events, removed from the queue (see ``_Writer.take_execution``)."""
    return _writer.take_execution(exec_id, store)


def flush_execution(exec_id: str, store: Store) -> None:
    """Store the execution's queued events now, after any it published earlier."""
    LastEvents(store, take_execution(exec_id, store)).store_rest()


# -- lifecycle hooks (called by the runtime for every live attempt) -----------------------


def started(
    frame: CheckpointFrame, store: Store, checkpoint_type: str | None, *, run: int, fence: int
) -> None:
    lane = Lane(
        store,
        frame.exec_id,
        frame.call_id,
        frame.name,
        checkpoint_type,
        run_attempt=f"{run}.{frame.attempt}",
        fence=fence,
    )
    frame.events = lane
    item = [lane, STARTED, None, time.time(), lane.reserve(), None]
    if checkpoint_type is None:  # a plain started event: its returned one may join it
        lane.started_item = item
    _writer.put(item)


def returned(frame: CheckpointFrame | None) -> None:
    lane = None if frame is None else frame.events
    if lane is not None:
        ts, index = time.time(), lane.reserve()
        if not _writer.join_started(lane, ts, index):
            _writer.put((lane, RETURNED, None, ts, index, None))


def failed(frame: CheckpointFrame | None, error: BaseException) -> None:
    lane = None if frame is None else frame.events
    if lane is None:
        return
    # The exception's text may hold secrets (an API key in a message): the event
    # names only its type; the call's failure record keeps the full message.
    fields = json.dumps(
        {
            "status": "failed",
            "error_type": type(error).__name__,
            "message": f"The checkpoint function raised {type(error).__name__}.",
        }
    )[1:-1]
    _writer.put((lane, FAILED, fields, time.time(), lane.reserve(), None))


# -- publishing from user code -------------------------------------------------------------


def _lane(api: str) -> Lane:
    frame = current_checkpoint.get()
    if frame is None:
        raise KitaruContextError(
            f"kitaru.{api}() can only be called inside a @checkpoint function (it "
            "describes the checkpoint that is running). Move the call into a checkpoint."
        )
    lane = frame.events
    if lane is None:  # an isolated checkpoint's process: continue the parent's lane
        from kitaru._runtime.context import current_execution

        ctx = current_execution.get()
        if ctx is None:  # pragma: no cover - a frame always runs in an execution
            raise KitaruContextError(f"kitaru.{api}() found no running execution.")
        lane = Lane(
            ctx.backend.store,
            frame.exec_id,
            frame.call_id,
            frame.name,
            None,
            correlation_id=os.environ.get(CORRELATION_ENV) or None,
            next_index=int(os.environ.get(NEXT_INDEX_ENV) or 0),
            fence=int(os.environ[FENCE_ENV]) if os.environ.get(FENCE_ENV) else None,
        )
        frame.events = lane
    return lane


def check_kind(kind: object) -> str:
    if not isinstance(kind, str) or not kind.strip():
        raise KitaruUsageError(f"Event kind must be a non-empty string, got {kind!r}.")
    if "\n" in kind or "\r" in kind:
        raise KitaruUsageError(f"Event kind {kind!r} cannot contain line breaks.")
    kind = kind.strip()
    if kind in RESERVED_KINDS:
        raise KitaruUsageError(
            f"Event kind {kind!r} is reserved for the event stream's own control frames "
            f"({', '.join(sorted(RESERVED_KINDS))}); choose another kind, e.g. 'my_app.{kind}'."
        )
    if len(kind) > _KIND_MAX:
        raise KitaruUsageError(
            f"Event kind {kind[:40]!r}... is {len(kind)} characters long; use at most {_KIND_MAX}."
        )
    return kind


def _check_correlation_id(correlation_id: object) -> str | None:
    if correlation_id is None:
        return None
    if not isinstance(correlation_id, str) or not correlation_id.strip():
        raise KitaruUsageError(
            f"Event correlation_id must be a non-empty string, got {correlation_id!r}."
        )
    if len(correlation_id.strip()) > _CORRELATION_MAX:
        raise KitaruUsageError(
            f"Event correlation_id is {len(correlation_id.strip())} characters long; "
            f"use at most {_CORRELATION_MAX}."
        )
    return correlation_id.strip()


def _check_index(index: object) -> int | None:
    if index is None:
        return None
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise KitaruUsageError(f"Event index must be a non-negative integer, got {index!r}.")
    return index


def _fields_json(kind: str, fields: Mapping[str, Any]) -> str:
    """The fields as JSON members (without braces), serialized now: later changes to
    the caller's objects cannot leak in. Values JSON cannot hold are stored as text."""
    try:
        text = json.dumps(dict(fields), default=str)
    except (TypeError, ValueError) as exc:
        raise KitaruUsageError(
            f"The payload of event {kind!r} cannot be stored as JSON ({exc}). Use a mapping "
            "with string keys and JSON-like values (strings, numbers, lists, mappings)."
        ) from None
    return text[1:-1]


def publish(
    kind: str,
    payload: Mapping[str, Any] | None = None,
    *,
    message: str | None = None,
    correlation_id: str | None = None,
    index: int | None = None,
    flush: bool = False,
    api: str = "events.publish",
) -> None:
    """Queue one event of the running checkpoint (see ``kitaru.events.publish``)."""
    kind = check_kind(kind)
    if payload is not None and not isinstance(payload, Mapping):
        raise KitaruUsageError(
            f"The payload of event {kind!r} must be a mapping (or None), "
            f"got {type(payload).__name__}."
        )
    if message is not None and not isinstance(message, str):
        raise KitaruUsageError(
            f"The message of event {kind!r} must be a string, got {type(message).__name__}."
        )
    correlation = _check_correlation_id(correlation_id)
    explicit_index = _check_index(index)
    lane = _lane(api)
    fields: dict[str, Any] = {}
    if message is not None:
        fields["message"] = message
    if payload:
        fields["data"] = dict(payload)
    text = _fields_json(kind, fields)
    _writer.put((lane, kind, text, time.time(), lane.reserve(explicit_index), correlation))
    if flush:
        _writer.flush(2.0)


def progress(
    message: str,
    *,
    percent: float | None = None,
    correlation_id: str | None = None,
    flush: bool = False,
    **fields: Any,
) -> None:
    """Publish a ``kitaru.checkpoint.progress`` event of the running checkpoint.

    ``percent`` is a fraction from 0 to 1; it and the extra keyword ``fields``
    land under the event's ``data`` key. Outside a checkpoint:
    ``KitaruContextError``; a blank message or a bad percent: ``KitaruUsageError``.
    """
    if not isinstance(message, str) or not message.strip():
        raise KitaruUsageError(f"Progress message must be a non-empty string, got {message!r}.")
    data = dict(fields)
    if percent is not None:
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise KitaruUsageError(
                f"Progress percent must be a number from 0 to 1, got {percent!r}."
            )
        value = float(percent)
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            raise KitaruUsageError(
                f"Progress percent must be a number from 0 to 1 (a fraction: 0.5 is "
                f"half done), got {percent!r}."
            )
        data["percent"] = value
    publish(
        PROGRESS,
        data or None,
        message=message,
        correlation_id=correlation_id,
        flush=flush,
        api="progress",
    )


# -- isolated checkpoints -----------------------------------------------------------------


def child_env(frame: CheckpointFrame) -> dict[str, str]:
    """Environment for an isolated attempt's process, so it continues this lane; called
    just before the child starts, it first stores what this process queued for the
    execution (the attempt's started event): the child stores its own events at once,
    and they would otherwise take earlier positions whenever it is quicker than the
    writer."""
    lane = frame.events
    if lane is None:
        return {}
    flush_execution(lane.exec_id, lane.store)
    env = {CORRELATION_ENV: lane.correlation_id, NEXT_INDEX_ENV: str(lane.next_index)}
    if lane.fence is not None:
        env[FENCE_ENV] = str(lane.fence)
    return env


def child_finished(frame: CheckpointFrame) -> int | None:
    """In the isolated process: make its events durable; the lane's next index."""
    lane = frame.events
    if lane is None:
        return None
    _writer.flush(10.0)
    return lane.next_index


def child_reported(frame: CheckpointFrame, next_index: object) -> None:
    """In the parent: later events of the lane follow those the child published."""
    if frame.events is not None and isinstance(next_index, int):
        frame.events.advance_to(next_index)
