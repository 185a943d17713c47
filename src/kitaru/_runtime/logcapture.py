"""Capturing what flow bodies and checkpoints print and log.

Two taps, both keyed by the context variables that say which execution and
checkpoint call is running, so concurrent calls never mix their lines:

- ``sys.stdout`` / ``sys.stderr`` are wrapped by a tee that still writes to
  the terminal and records complete lines written in an execution's context;
- ``logging.Logger.callHandlers`` is wrapped to record, in an execution's
  context, each ``logging`` record that reaches the root logger, with its
  level, before the record's handlers run as usual. Whatever those handlers
  print to the tee meanwhile is the record's echo and is not recorded again.

Capture adds no handler anywhere: a handler on the root logger would change
what logging does outside flows too (no ``logging.lastResort`` for a root
without handlers of its own, ``basicConfig()`` doing nothing). Outside an
execution the wrapper only calls the original, so records reach exactly the
handlers they would reach without Kitaru.

Lines go to the store in batches from one background thread, never on the
checkpoint's hot path; ``flush(exec_id)`` makes them durable when a run ends.
A line the store cannot take is dropped alone, and the first failure to store
lines is reported once, through a logger whose records are never captured.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

from kitaru import _environ
from kitaru._runtime.context import current_checkpoint, current_execution

if TYPE_CHECKING:
    from kitaru._runtime.execution import ExecutionContext
    from kitaru._store import Store
    from kitaru._store.records_extra import LogRecord

_FLUSH_SECONDS = 0.2
_BATCH = 500

#: Reports lines that could not be stored; its records are never captured (a
#: report captured into the store that is failing would only fail again).
report_logger = logging.getLogger("kitaru.logcapture")


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
                    unstored = store.insert_logs(records)
                except Exception as exc:  # logs are best effort; never take a run down
                    _report_unstored(records, exc)
                else:
                    if unstored:
                        _report_unstored([r for r, _ in unstored], unstored[0][1])
            with self._cond:
                self._written += len(batch)
                self._cond.notify_all()


_reported = threading.Event()


def _report_unstored(records: list[LogRecord], error: BaseException) -> None:
    """Say once per process that captured lines were lost (they did reach the terminal)."""
    exec_ids = ", ".join(sorted({r.exec_id for r in records}))
    count = len(records)
    lines = "line" if count == 1 else "lines"
    if _reported.is_set():
        report_logger.debug("Could not store %d captured log %s of %s", count, lines, exec_ids)
        return
    _reported.set()
    reason = (str(error).split("\n", 1)[0] or type(error).__name__)[:300]
    report_logger.warning(
        "Kitaru could not store %d captured log %s of execution %s (%s: %s). They "
        "reached the terminal, but `kitaru executions logs` will not show them; check "
        "that the store is reachable and writable. Further failures to store captured "
        "logs in this process are not reported.",
        count,
        lines,
        exec_ids,
        type(error).__name__,
        reason,
    )


_writer = _Writer()
_local = threading.local()


def _emit(stream: str, message: str, *, level: str | None = None, name: str | None = None) -> None:
    ctx = current_execution.get()
    if ctx is None or not enabled():
        return
    frame = current_checkpoint.get()
    from kitaru._store.records_extra import LogRecord

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
            # (An isolated checkpoint's process has no run record: its parent replays
            # its output, under the parent's fence.)
            fence=getattr(getattr(ctx, "record", None), "fence", None),
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
        if getattr(_local, "echoing", False):
            return written  # a handler printing the record just captured
        if text and current_execution.get() is not None and enabled():
            frame = current_checkpoint.get()
            key = (_exec_id(), None if frame is None else frame.call_id, self._stream)
            with _partial_lock:
                pending = _partial.pop(key, "") + text
                *lines, rest = pending.split("\n")
                if rest:
                    _partial[key] = rest
            for line in lines:
                if line:
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
        from kitaru._store.records_extra import LogRecord

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


def _capture_then_call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
    """``Logger.callHandlers``, recording ``record`` first when an execution is running."""
    if (
        current_execution.get() is None
        or record.name == report_logger.name
        or not _reaches_root(self)
        or not enabled()
    ):
        _call_handlers(self, record)
        return
    try:
        message = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
    except Exception:  # a broken log call: the handlers report it as they always do
        _call_handlers(self, record)
        return
    _emit("logging", message, level=record.levelname, name=record.name)
    echoing = getattr(_local, "echoing", False)
    _local.echoing = True
    try:
        _call_handlers(self, record)
    finally:
        _local.echoing = echoing


def _reaches_root(logger: logging.Logger) -> bool:
    """Would a record handled by ``logger`` propagate up to the root logger's handlers?"""
    current: logging.Logger | None = logger
    while current is not None and current.parent is not None:
        if not current.propagate:
            return False
        current = current.parent
    return True


#: What ``Logger.callHandlers`` was before ``install()`` wrapped it (once per process).
_call_handlers = logging.Logger.callHandlers
_patched = False
_install_lock = threading.Lock()


def enabled() -> bool:
    """``KITARU_CAPTURE_LOGS=0`` turns capture off (it is on by default)."""
    return _environ.get("KITARU_CAPTURE_LOGS", "1").strip().lower() not in ("0", "false", "no")


def install() -> None:
    """Put the taps in place (idempotent; re-wraps streams someone replaced since)."""
    if not enabled():
        return
    with _install_lock:
        if not isinstance(sys.stdout, _Tee) and sys.stdout is not None:
            sys.stdout = _Tee(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _Tee) and sys.stderr is not None:
            sys.stderr = _Tee(sys.stderr, "stderr")
        global _call_handlers, _patched
        if not _patched:
            _call_handlers = logging.Logger.callHandlers
            logging.Logger.callHandlers = _capture_then_call_handlers  # type: ignore[method-assign]
            _patched = True


def flush(ctx: ExecutionContext | None = None) -> None:
    """Make every line captured so far durable; with ``ctx``, also its unfinished lines."""
    if ctx is not None:
        _finish_partial_lines(ctx)
    _writer.flush()


def stdout_into(stream: TextIO) -> TextIO:
    """A stand-in for ``sys.stdout`` that writes to ``stream`` (e.g. stderr).

    Lines written to it in an execution are still captured as the execution's
    stdout: a CLI in JSON mode keeps its stdout for the JSON document alone.
    """
    raw = stream._wrapped if isinstance(stream, _Tee) else stream
    return _Tee(raw, "stdout")  # type: ignore[return-value]
