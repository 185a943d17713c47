"""Capturing what flow bodies and checkpoints print and log.

Two taps, both keyed by the context variables that say which execution and
checkpoint call is running, so concurrent calls never mix their lines:

- ``sys.stdout`` / ``sys.stderr`` are wrapped by a tee that still writes to
  the terminal and records complete lines written in an execution's context;
- a handler at the front of the root logger records ``logging`` records with
  their level. A record that a stream handler then prints is recorded once
  (as the record), not again as a stderr line. If no other handler would show
  the record, the handler prints it the way Python's last-resort handler does,
  so adding capture does not silence warnings.

Lines go to the store in batches from one background thread, never on the
checkpoint's hot path; ``flush(exec_id)`` makes them durable when a run ends.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru._store import LogRecord

if TYPE_CHECKING:
    from kitaru._runtime.execution import ExecutionContext
    from kitaru._store import Store

_FLUSH_SECONDS = 0.2
_BATCH = 500

logger = logging.getLogger("kitaru")


class _Writer:
    """Queues captured lines and writes them to their store in batches."""

    def __init__(self) -> None:
        self._pending: list[tuple[Store, LogRecord]] = []
        self._cond = threading.Condition()
        self._written = 0
        self._queued = 0
        self._thread: threading.Thread | None = None

    def put(self, store: Store, record: LogRecord) -> None:
        with self._cond:
            self._pending.append((store, record))
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="kitaru-logs", daemon=True)
                self._thread.start()
            if len(self._pending) >= _BATCH:
                self._cond.notify_all()

    def flush(self) -> None:
        """Block until everything queued so far is written."""
        with self._cond:
            target = self._queued
            self._cond.notify_all()
            while self._written < target and self._thread is not None:
                self._cond.wait(1.0)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._cond.wait(_FLUSH_SECONDS)
                batch, self._pending = self._pending, []
            by_store: dict[int, tuple[Store, list[LogRecord]]] = {}
            for store, record in batch:
                by_store.setdefault(id(store), (store, []))[1].append(record)
            for store, records in by_store.values():
                try:
                    store.insert_logs(records)
                except Exception:  # logs are best effort; never take a run down
                    logger.debug("Could not store %d captured log lines", len(records))
            with self._cond:
                self._written += len(batch)
                self._cond.notify_all()


_writer = _Writer()
_local = threading.local()


def _emit(stream: str, message: str, *, level: str | None = None, name: str | None = None) -> None:
    ctx = current_execution.get()
    if ctx is None or not enabled():
        return
    frame = current_checkpoint.get()
    _writer.put(
        ctx.backend.store,
        LogRecord(
            exec_id=ctx.exec_id,
            ts=time.time(),
            stream=stream,
            message=message,
            call_id=None if frame is None else frame.call_id,
            checkpoint=None if frame is None else frame.name,
            level=level,
            logger=name,
        ),
    )


class _Tee:
    """A text stream that writes through and records complete lines in an execution.

    Unfinished lines are kept per call (not per thread), so a checkpoint's
    ``write("50%")`` never glues onto the flow body's next line; what is left
    unfinished when a run ends is stored by ``flush``.
    """

    def __init__(self, wrapped: TextIO, stream: str) -> None:
        self._wrapped = wrapped
        self._stream = stream

    def write(self, text: str) -> int:
        written = self._wrapped.write(text)
        if text and current_execution.get() is not None and enabled():
            frame = current_checkpoint.get()
            key = (_exec_id(), None if frame is None else frame.call_id, self._stream)
            with _partial_lock:
                pending = _partial.pop(key, "") + text
                *lines, rest = pending.split("\n")
                if rest:
                    _partial[key] = rest
            for line in lines:
                if line and not _is_logging_echo(line):
                    _emit(self._stream, line)
        return written

    def flush(self) -> None:
        self._wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


def _exec_id() -> str | None:
    ctx = current_execution.get()
    return None if ctx is None else ctx.exec_id


_partial: dict[tuple[str | None, str | None, str], str] = {}
_partial_lock = threading.Lock()


def end_call(ctx: ExecutionContext, call_id: str) -> None:
    """A checkpoint call ended: store its unfinished lines now, in order."""
    if _partial:
        _finish_partial_lines(ctx, call_id=call_id)


def _finish_partial_lines(ctx: ExecutionContext, *, call_id: str | None = None) -> None:
    """Store unfinished lines of ``ctx``'s execution (of one call, or all at run end)."""
    exec_id = ctx.exec_id
    with _partial_lock:
        keys = [
            key for key in _partial if key[0] == exec_id and (call_id is None or key[1] == call_id)
        ]
        leftovers = [(key, _partial.pop(key)) for key in keys]
    for (_, line_call_id, stream), text in leftovers:
        _writer.put(
            ctx.backend.store,
            LogRecord(
                exec_id=exec_id,
                ts=time.time(),
                stream=stream,
                message=text,
                call_id=line_call_id,
                checkpoint=ctx.call_name(line_call_id) if line_call_id else None,
            ),
        )


def _is_logging_echo(line: str) -> bool:
    """True once for the printed form of the logging record just captured in this thread."""
    message = getattr(_local, "last_record", None)
    if message and line.endswith(message):
        _local.last_record = None
        return True
    return False


class _CaptureHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if current_execution.get() is None:
            return
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[0] is not None:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # a broken log call must not break the flow
            return
        if not enabled():
            return
        _emit("logging", message, level=record.levelname, name=record.name)
        if _no_other_handler(record):
            last_resort = logging.lastResort
            if last_resort is not None and record.levelno >= last_resort.level:
                _local.last_record = message.split("\n")[-1]
                last_resort.handle(record)
        elif _printed_by_a_stream_handler(record):
            # A handler will print it to our tee: record it once, as the record.
            _local.last_record = message.split("\n")[-1]


def _no_other_handler(record: logging.LogRecord) -> bool:
    """Would Python have used its last-resort handler for this record without us?"""
    current: logging.Logger | None = logging.getLogger(record.name)
    while current is not None:
        if any(not isinstance(h, _CaptureHandler) for h in current.handlers):
            return False
        if not current.propagate:
            break
        current = current.parent
    return True


def _printed_by_a_stream_handler(record: logging.LogRecord) -> bool:
    current: logging.Logger | None = logging.getLogger(record.name)
    while current is not None:
        for handler in current.handlers:
            stream = getattr(handler, "stream", None)
            if isinstance(stream, _Tee) and record.levelno >= handler.level:
                return True
        if not current.propagate:
            break
        current = current.parent
    return False


_handler = _CaptureHandler(level=logging.NOTSET)
_install_lock = threading.Lock()


def enabled() -> bool:
    """``KITARU_CAPTURE_LOGS=0`` turns capture off (it is on by default)."""
    return os.environ.get("KITARU_CAPTURE_LOGS", "1").strip().lower() not in ("0", "false", "no")


def install() -> None:
    """Put the taps in place (idempotent; re-wraps streams someone replaced since)."""
    if not enabled():
        return
    with _install_lock:
        if not isinstance(sys.stdout, _Tee) and sys.stdout is not None:
            sys.stdout = _Tee(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _Tee) and sys.stderr is not None:
            sys.stderr = _Tee(sys.stderr, "stderr")
        root = logging.getLogger()
        if not root.handlers or root.handlers[0] is not _handler:
            if _handler in root.handlers:
                root.removeHandler(_handler)
            root.handlers.insert(0, _handler)


def flush(ctx: ExecutionContext | None = None) -> None:
    """Make every line captured so far durable; with ``ctx``, also its unfinished lines."""
    if ctx is not None:
        _finish_partial_lines(ctx)
    _writer.flush()
