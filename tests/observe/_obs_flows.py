"""Flows the observability tests run in child processes (and resume in the test process).

Imported as ``tests.observe._obs_flows`` by the tests and by children started with
the repository root on ``PYTHONPATH``. ``OBS_STATE`` names a directory for marker
files. ``main([FLOW, ARG])`` runs one, prints the execution id (and writes it to
``OBS_STATE/exec_id``), then waits for the execution and prints its result.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import kitaru
from kitaru import checkpoint, flow

logger = logging.getLogger("obs.child")


def _state() -> Path:
    return Path(os.environ["OBS_STATE"])


def _wait_for_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


# --- crash after a flow-scope save --------------------------------------------------


@checkpoint
def crash_once(x: int) -> int:
    marker = _state() / "crashed"
    if not marker.exists():
        marker.write_text("x")
        os.kill(os.getpid(), 9)
    return x + 1


@flow
def save_then_crash(x: int) -> int:
    runs = _state() / "body-runs"
    count = int(runs.read_text()) + 1 if runs.exists() else 1
    runs.write_text(str(count))
    kitaru.save("plan", {"body_run": count}, type="context", tags=["draft"])
    return crash_once(x)


# --- a flow to follow while it runs ---------------------------------------------------


@checkpoint
def slow_step(x: int) -> int:
    print(f"step started {x}", flush=True)
    (_state() / "started").write_text("x")
    _wait_for_file(_state() / "release")
    print("step released", flush=True)
    logger.warning("step warns")
    return x * 2


@flow
def followed(x: int) -> int:
    print("body begins")
    value = slow_step(x)
    print(f"body ends with {value}")  # the last line, written just before finishing
    return value


# --- output for the terminal / capture switch -----------------------------------------


@checkpoint
def chatty(x: int) -> int:
    print(f"chatty out {x}")
    print(f"chatty err {x}", file=sys.stderr)
    logger.warning("chatty warning %s", x)
    return x


@flow
def noisy(x: int) -> int:
    print("noisy body")
    return chatty(x)


@checkpoint
def plain(x: int) -> int:
    return x + 1


@flow
def simple(x: int) -> int:
    return plain(x) + plain(x + 1)


def main(argv: list[str]) -> None:
    target = globals()[argv[0]]
    handle = target.run(int(argv[1]) if len(argv) > 1 else 1)
    print(handle.exec_id, flush=True)
    (_state() / "exec_id").write_text(handle.exec_id)
    print(f"result={handle.wait()}", flush=True)
