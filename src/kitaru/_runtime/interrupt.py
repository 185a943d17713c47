"""Ctrl-C in a script that waits for an execution (``FlowHandle.wait()``).

The first Ctrl-C stops an execution that runs in this process (see
``control.interrupt``: recorded ``cancelled``, resumable at once) and goes on
as ``ExecutionInterrupted``, a ``KeyboardInterrupt`` a script may catch.
Uncaught, it prints one line instead of a traceback and exits with 130 at once:
the runner thread may be inside a checkpoint that would otherwise hold the
interpreter's exit until it returns (its output is never recorded). A second
Ctrl-C exits with 130 straight away, whatever the first one was still doing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from kitaru._runtime import control
from kitaru._runtime.driver import get_live
from kitaru.errors import KitaruError

if TYPE_CHECKING:
    from kitaru._backend import Backend

#: The shell's exit status for a process stopped by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
#: How long the first Ctrl-C lets the runner reach a boundary (and flush its logs).
_GRACE_SECONDS = 0.5


class ExecutionInterrupted(KeyboardInterrupt):
    """Ctrl-C while waiting for an execution; the message says what became of it."""

    def __init__(self, message: str, *, exec_id: str) -> None:
        super().__init__(message)
        self.exec_id = exec_id

    def __str__(self) -> str:
        return str(self.args[0])


def interrupted(backend: Backend, exec_id: str) -> ExecutionInterrupted:
    """Handle the first Ctrl-C while waiting for ``exec_id``; the error to raise."""
    _exit_on_next_interrupt(exec_id)
    _report_uncaught_interrupts()
    resume_hint = f"resume with `kitaru executions resume {exec_id}`"
    live = get_live(exec_id)
    if live is None or live.done.is_set():
        # Not running in this process: leave it alone, only stop waiting for it.
        try:
            status = backend.store.get_status(exec_id)
        except KitaruError:
            status = None
        state = f" (it is {status.value})" if status is not None else ""
        message = f"Interrupted: stopped waiting for execution {exec_id}{state}."
        if status is not None and not status.is_finished:
            message += f" Stop it with `kitaru executions cancel {exec_id}`."
        return ExecutionInterrupted(message, exec_id=exec_id)
    try:
        stopped = control.interrupt(backend, live)
    except KitaruError as exc:
        # The store cannot take it: the runner dies with this process, and resume
        # takes over from a dead runner of this machine without waiting.
        live.cancel.set()
        message = (
            f"Interrupted: execution {exec_id} stops with this process (recording the "
            f"cancellation failed: {' '.join(str(exc).split())}); {resume_hint}."
        )
        return ExecutionInterrupted(message, exec_id=exec_id)
    live.done.wait(_GRACE_SECONDS)
    if stopped:
        message = f"Interrupted: execution {exec_id} cancelled; {resume_hint}."
    else:
        status = backend.store.get_status(exec_id)
        state = "is gone" if status is None else f"was already {status.value}"
        message = f"Interrupted: execution {exec_id} {state}."
    return ExecutionInterrupted(message, exec_id=exec_id)


def _exit_now(message: str) -> None:
    """Print ``message`` and end the process with 130, without running threads' code."""
    stream = sys.stderr or sys.__stderr__
    with contextlib.suppress(Exception):
        if stream is not None:
            stream.write(message.rstrip("\n") + "\n")
    for out in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if out is not None:
                out.flush()
    with contextlib.suppress(Exception):
        logging.shutdown()
    os._exit(EXIT_INTERRUPTED)


def _exit_on_next_interrupt(exec_id: str) -> None:
    """Make a second Ctrl-C exit at once (only over Python's own SIGINT handler)."""
    import signal  # here: `import kitaru` does not pay for it

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # someone (an IDE, a server) handles Ctrl-C their way

    def second(signum: int, frame: FrameType | None) -> None:
        _exit_now(
            f"Interrupted again: exiting now; resume execution {exec_id} with "
            f"`kitaru executions resume {exec_id}`."
        )

    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, second)


_hook_lock = threading.Lock()
_previous_hook: Any = None


def _report_uncaught_interrupts() -> None:
    """An uncaught ExecutionInterrupted prints its line, not a traceback, and exits 130."""
    global _previous_hook
    with _hook_lock:
        if _previous_hook is not None:
            return
        _previous_hook = sys.excepthook

        def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
            if isinstance(value, ExecutionInterrupted):
                _exit_now(str(value))
            _previous_hook(kind, value, tb)

        sys.excepthook = hook
