"""A fan-out the crash tests kill, run as a script: ``python _crash_flow.py LEDGER MODE N``.

``N`` submissions of ``work``; every call appends ``"<i> start"`` / ``"<i> end"``
to the ledger (fsync'd) so the parent can count real runs across processes.

Modes (the delays are part of the flow's inputs, so a resume uses the same ones):

- ``scattered``: each call sleeps 0.2-0.5 s in a shuffled pattern on the default
  pool, so calls finish out of submission order (later ones before earlier ones);
- ``inorder``: the pool holds every call and call ``i`` sleeps ``0.2 + 0.06 * i`` s,
  so calls finish in submission order.

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


@checkpoint
def work(ledger: str, i: int, delay: float) -> int:
    record(ledger, f"{i} start")
    time.sleep(delay)
    record(ledger, f"{i} end")
    return i * i


@flow
def fanout(ledger: str, delays: list[float]) -> list[int]:
    futures = work.map([ledger] * len(delays), range(len(delays)), delays)
    return [f.result() for f in futures]


if __name__ == "__main__":
    ledger_path, mode, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    record(ledger_path, "main")
    pool = size if mode == "inorder" else None
    handle = fanout.run(ledger_path, delays(mode, size), max_concurrency=pool)
    os.write(sys.stdout.fileno(), f"EXEC {handle.exec_id}\n".encode())
    handle.wait()
    os.write(sys.stdout.fileno(), f"DONE {handle.exec_id}\n".encode())
