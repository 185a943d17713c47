"""The SSE stream of one execution: its events and log lines as they are stored.

Each message's ``id`` is ``<event position>.<log line id>``: a browser's
EventSource sends it back as ``Last-Event-ID`` when it reconnects, and the
stream continues after both. Message types: ``event`` (an ExecutionEvent),
``log`` (a LogEntry), ``status`` (when the status changes) and ``end``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from kitaru._backend import get_backend
from kitaru.client._events import ExecutionEvent
from kitaru.client._models import LogEntry
from kitaru.errors import KitaruUsageError
from kitaru.server._settings import MAX_ROW_ID

_PAGE = 500
_DIGITS = re.compile(r"[0-9]{1,30}")
_POLL_MIN = 0.05
_POLL_MAX = 0.5
#: A comment line this often keeps proxies from closing an idle stream.
_KEEPALIVE = 15.0


@dataclass
class Cursor:
    event: int = 0
    log: int = 0

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        event, _, log = text.strip().partition(".")
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        if not _DIGITS.fullmatch(event) or (log and not _DIGITS.fullmatch(log)):
            raise KitaruUsageError(
                f"since={text!r} (or Last-Event-ID) is not a stream position; pass the id "
                "of the last message received (e.g. 12.40), or nothing to start from the "
                "beginning."
            )
        cursor = cls(int(event), int(log or 0))
        if max(cursor.event, cursor.log) > MAX_ROW_ID:
            # No stored event or line has such a position, and the store cannot even
            # compare one (a 64-bit or 32-bit column): refused before the stream starts.
            raise KitaruUsageError(
                f"since={text!r} (or Last-Event-ID) is not a position this server gave: "
                f"each part is at most {MAX_ROW_ID}. Pass the id of the last message "
                "received, or nothing to start from the beginning."
            )
        return cursor

    def __str__(self) -> str:
        return f"{self.event}.{self.log}"


def _message(kind: str, data: dict[str, Any], cursor: Cursor) -> bytes:
    text = json.dumps(data, default=str, separators=(",", ":"))
    return f"id: {cursor}\nevent: {kind}\ndata: {text}\n\n".encode()


def _read(exec_id: str, cursor: Cursor, with_logs: bool) -> tuple[str | None, list[Any], list[Any]]:
    store = get_backend().store
    status = store.get_status(exec_id)  # before the reads: see kitaru.client._events
    events = store.events(exec_id, after=cursor.event, limit=_PAGE)
    logs = (
        store.logs(exec_id, after_id=cursor.log or None, limit=_PAGE, source=None)
        if with_logs
        else []
    )
    return (None if status is None else status.value), events, logs


async def sse(
    request: Request, exec_id: str, cursor: Cursor, *, follow: bool = True, logs: bool = True
) -> AsyncIterator[bytes]:
    """``follow=False``: stop after what is stored now; ``logs=False``: events only."""
    last_status: str | None = None
    poll = _POLL_MIN
    idle = 0.0
    yield b"retry: 1000\n\n"
    while True:
        if await request.is_disconnected():
            return
        status, events, lines = await run_in_threadpool(_read, exec_id, cursor, logs)
        for record in events:
            cursor.event = record.seq
            yield _message("event", ExecutionEvent.from_record(record).to_dict(), cursor)
        for log in lines:
            cursor.log = log.id
            yield _message("log", LogEntry.from_record(log).to_dict(), cursor)
        if status != last_status:
            last_status = status
            yield _message("status", {"exec_id": exec_id, "status": status}, cursor)
        if len(events) == _PAGE or len(lines) == _PAGE:
            continue
        if not follow or status is None or status in ("completed", "failed", "cancelled"):
            yield _message("end", {"exec_id": exec_id, "status": status}, cursor)
            return
        if events or lines:
            poll, idle = _POLL_MIN, 0.0
        else:
            poll = min(poll * 1.5, _POLL_MAX)
            idle += poll
            if idle >= _KEEPALIVE:
                idle = 0.0
                yield b": keep-alive\n\n"
        await asyncio.sleep(poll)
