"""A fan-out the crash tests kill, run as a script: ``python _crash_flow.py LEDGER MODE N``.

``N`` submissions of ``work``; every call appends ``"<i> start"`` / ``"<i> end"``
to the ledger (fsync'd) so the parent can count real runs across processes.

Some calls are *held*: they do not return until the gate file (``LEDGER.gate``)
exists. The parent creates it only after the kill, so a held call is certainly in
flight when the process dies, however slowly the parent polls under load.

Modes (delays and holds are part of the flow's inputs, so a resume uses the same ones):

- ``scattered``: each call sleeps 0.2-0.5 s in a shuffled pattern on the default
  pool, and every fifth call (0, 5, 10, ...) is held, so later calls finish before
  earlier ones;
- ``inorder``: the pool holds every call, call ``i`` sleeps ``0.2 + 0.06 * i`` s and
  the last ``N // 3`` calls are held, so calls finish in submission order.

Resuming workers load this file again as ``__mp_main__``: the ``__main__`` block
must not run there.
"""

from __future__ import annotations

import os
import sys
import time

from kitaru import checkpoint, flow


def record(ledger: str, line: str) -> None:
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def delays(mode: str, n: int) -> list[float]:
    if mode == "scattered":
        return [round(0.2 + 0.3 * ((7 * i) % 10) / 9, 3) for i in range(n)]
    if mode == "inorder":
        return [round(0.2 + 0.06 * i, 3) for i in range(n)]
    raise SystemExit(f"unknown mode {mode!r}")


def held(mode: str, n: int) -> list[bool]:
    if mode == "scattered":
        return [i % 5 == 0 for i in range(n)]
    return [i >= n - n // 3 for i in range(n)]


def gate_path(ledger: str) -> str:
    return f"{ledger}.gate"


@checkpoint
def work(ledger: str, i: int, delay: float, hold: bool) -> int:
    record(ledger, f"{i} start")
    time.sleep(delay)
    while hold and not os.path.exists(gate_path(ledger)):
        time.sleep(0.01)
    record(ledger, f"{i} end")
    return i * i


@flow
def fanout(ledger: str, delays: list[float], holds: list[bool]) -> list[int]:
    futures = work.map([ledger] * len(delays), range(len(delays)), delays, holds)
    return [f.result() for f in futures]


if __name__ == "__main__":
    ledger_path, mode, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    record(ledger_path, "main")
    pool = size if mode == "inorder" else None
    handle = fanout.run(ledger_path, delays(mode, size), held(mode, size), max_concurrency=pool)
    os.write(sys.stdout.fileno(), f"EXEC {handle.exec_id}\n".encode())
    handle.wait()
    os.write(sys.stdout.fileno(), f"DONE {handle.exec_id}\n".encode())
