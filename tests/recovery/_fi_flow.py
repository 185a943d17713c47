"""The flow the fault-injection tests kill, run as a script: ``python _fi_flow.py LEDGER N``.

Four checkpoint calls (``load``, ``scale``, ``scale:2``, ``summarize``). Every
checkpoint function appends ``"<call id> start"`` / ``"<call id> end"`` to the
ledger file (fsync'd), so the parent can count how often each one really ran,
across processes.

Fault injection: when ``KILL_AT`` names a point the flow reaches
(``before:<call id>``, ``inside:<call id>``, ``after:<call id>``), it prints
``AT <point> <exec id>`` and blocks until the parent kills it. ``FI_STEP_DELAY``
(seconds) makes every checkpoint sleep, for killing it at random moments.

Resuming workers load this file again (as ``__mp_main__``): the ``__main__``
block below must not run there, which the ``main`` ledger line lets the tests see.
"""

from __future__ import annotations

import os
import sys
import time

import kitaru
from kitaru import checkpoint, flow


def record(ledger: str, line: str) -> None:
    """Append one line to the ledger, durably (the process may be SIGKILLed next)."""
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def say(line: str) -> None:
    """One stdout line in one write(2): the flow thread and the main thread both print."""
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


def point(where: str) -> None:
    """Block here (for the parent's SIGKILL) when KILL_AT names this point."""
    if os.environ.get("KILL_AT") == where:
        say(f"AT {where} {kitaru.current_execution_id()}")
        time.sleep(600)
        os._exit(3)  # never killed: make the parent's failure obvious


def _work(ledger: str, call_id: str) -> None:
    record(ledger, f"{call_id} start")
    point(f"inside:{call_id}")
    delay = float(os.environ.get("FI_STEP_DELAY", "0"))
    if delay:
        time.sleep(delay)


@checkpoint
def load(ledger: str, n: int) -> list[int]:
    _work(ledger, "load")
    value = list(range(1, n + 1))
    record(ledger, "load end")
    return value


@checkpoint
def scale(ledger: str, call_id: str, xs: list[int], factor: int) -> list[int]:
    _work(ledger, call_id)
    value = [x * factor for x in xs]
    record(ledger, f"{call_id} end")
    return value


@checkpoint
def summarize(ledger: str, xs: list[int]) -> dict[str, int]:
    _work(ledger, "summarize")
    value = {"count": len(xs), "total": sum(xs), "max": max(xs)}
    record(ledger, "summarize end")
    return value


@flow
def crash_pipeline(ledger: str, n: int) -> dict[str, object]:
    point("before:load")
    xs = load(ledger, n)
    point("after:load")
    point("before:scale")
    doubled = scale(ledger, "scale", xs, 2)
    point("after:scale")
    point("before:scale:2")
    tripled = scale(ledger, "scale:2", doubled, 3)
    point("after:scale:2")
    point("before:summarize")
    summary = summarize(ledger, tripled)
    point("after:summarize")
    return {"summary": summary, "first": tripled[0], "last": tripled[-1]}


if __name__ == "__main__":
    ledger_path, size = sys.argv[1], int(sys.argv[2])
    record(ledger_path, "main")
    handle = crash_pipeline.run(ledger_path, size)
    say(f"EXEC {handle.exec_id}")
    result = handle.wait()
    say(f"DONE {handle.exec_id} {result!r}")
