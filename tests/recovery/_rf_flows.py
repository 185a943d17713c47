"""Flows for the runner-failure and interrupt tests, importable by child processes.

Every checkpoint appends a line to a log file first, so tests count real runs
across processes (see ``_rc_flows.note``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from kitaru import checkpoint, flow
from tests.recovery._rc_flows import note

#: The output of ``produce``: larger than the inline limit, so it is written as a blob.
BIG = 200_000


def fill(path: Path) -> None:
    """Write to ``path`` until its filesystem is full."""
    chunk = b"\0" * 65536
    with open(path, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass  # ENOSPC: full, as intended


@checkpoint
def prepare(log: str) -> int:
    note(log, "prepare")
    return 1


@checkpoint(retries=2)
def produce(log: str, filler: str, marker: str, x: int) -> bytes:
    """The first time, something else fills the disk while this call runs."""
    note(log, "produce")
    if not Path(marker).exists():
        Path(marker).touch()
        fill(Path(filler))
    return b"y" * (BIG + x)


@flow(retries=2)
def fills_the_disk(log: str, filler: str, marker: str) -> int:
    return len(produce(log, filler, marker, prepare(log)))


#: Set by the in-process tests: ``held`` signals ``started`` and blocks on ``release``.
started = threading.Event()
release = threading.Event()


@checkpoint(retries=2)
def held(log: str, x: int) -> int:
    note(log, "held")
    started.set()
    release.wait(60)
    return x + 1


@flow(retries=2)
def store_breaks(log: str) -> int:
    return held(log, prepare(log))


def _main_thread_waits() -> bool:
    """The main thread is blocked in ``FlowHandle.wait()`` (so Ctrl-C lands there)."""
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "_wait" and frame.f_code.co_filename.endswith("handle.py"):
            return True
        frame = frame.f_back
    return False


@checkpoint
def slow(log: str, x: int) -> int:
    """Hangs (when RF_HANG is set) once the script's main thread waits for the result."""
    note(log, "slow")
    if os.environ.get("RF_HANG"):
        while not _main_thread_waits():
            time.sleep(0.01)
        note(log, "slow hanging")
        time.sleep(600)
    return x + 1


@flow
def interruptible(log: str) -> int:
    return slow(log, prepare(log))


def main(argv: list[str]) -> None:
    """A user's script: start ``interruptible``, print its id, wait for the result."""
    handle = interruptible.run(argv[0])
    print(handle.exec_id, flush=True)
    print(f"RESULT {handle.wait()}", flush=True)


def main_fill(argv: list[str]) -> None:
    """A user's script that runs ``fills_the_disk`` and reports the error it gets."""
    from kitaru import KitaruBackendError

    handle = fills_the_disk.run(*argv)
    print(handle.exec_id, flush=True)
    try:
        print(f"RESULT {handle.wait(timeout=120)}", flush=True)
    except KitaruBackendError as exc:
        print(f"BACKEND {type(exc).__name__}", flush=True)


def main_wait_for(argv: list[str]) -> None:
    """A script that waits for an execution another process runs; says when it waits."""
    from kitaru import FlowHandle

    def announce() -> None:
        while not _main_thread_waits():
            time.sleep(0.01)
        print("WAITING", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    print(f"RESULT {FlowHandle(argv[0]).wait()}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
