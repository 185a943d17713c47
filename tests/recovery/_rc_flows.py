"""Flows the recovery tests run in child processes and pick up elsewhere.

Imported as ``tests.recovery._rc_flows`` both by the test process and by the
children (which get the repository root on ``PYTHONPATH``), so a resume in the
test process finds the same flow. Every checkpoint appends a line to a log file
(fsync'd) before doing anything else: the tests count real runs across processes.

Crash control, read from the environment of the process running the step:

- ``RC_DIE_IN=<step>``: the step logs ``<step> dying`` and calls ``os._exit(0)``.
- ``RC_HANG_IN=<step>``: the step logs ``<step> hanging`` and sleeps until the
  parent kills the process with SIGKILL.
- ``RC_GATE=<path>``: ``gated_first`` logs ``first start`` and blocks until the
  file exists.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import kitaru
from kitaru import KitaruExecutionError, checkpoint, flow


def note(log: str, line: str) -> None:
    """Append one line to ``log`` durably (the process may be killed right after)."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _crash_point(log: str, step: str) -> None:
    if os.environ.get("RC_DIE_IN") == step:
        note(log, f"{step} dying")
        os._exit(0)
    if os.environ.get("RC_HANG_IN") == step:
        note(log, f"{step} hanging")
        time.sleep(600)
        os._exit(3)  # never killed: make the parent's failure obvious


@checkpoint
def fetch(log: str, x: int) -> int:
    note(log, "fetch")
    _crash_point(log, "fetch")
    return x + 1


@checkpoint
def transform(log: str, x: int) -> int:
    note(log, "transform")
    _crash_point(log, "transform")
    return x * 10


@checkpoint
def finish(log: str, x: int) -> str:
    note(log, "finish")
    _crash_point(log, "finish")
    return f"result={x}"


@flow
def pipeline(log: str, x: int) -> str:
    return finish(log, transform(log, fetch(log, x)))


@checkpoint
def gated_first(log: str, gate: str) -> int:
    note(log, "first start")
    while not Path(gate).exists():
        time.sleep(0.02)
    note(log, "first end")
    # What the run says once past the gate: a stale runner's must not be stored.
    print(f"woke in {os.getpid()}", file=sys.stderr)
    kitaru.events.publish("test.woke", {"pid": os.getpid()})
    return 1


@checkpoint
def second(log: str, x: int) -> int:
    note(log, "second")
    return x + 1


@flow
def gated(log: str, gate: str) -> int:
    return second(log, gated_first(log, gate))


@checkpoint(cache=False)
def gated_part(log: str, gate: str, i: int) -> int:
    note(log, f"part {i} start {os.getpid()}")
    while not Path(gate).exists():
        time.sleep(0.02)
    return i


@flow(cache=False, max_concurrency=2)
def gated_fan_out(log: str, gate: str, n: int) -> list[int]:
    """``n`` calls two at a time, each held at ``gate``: the rest wait in the pool."""
    return [f.result() for f in [gated_part.submit(log, gate, i) for i in range(n)]]


@checkpoint(retries=2, cache=False)
def always_fails(log: str) -> int:
    note(log, f"attempt {os.getpid()}")
    raise RuntimeError("still broken")


@flow(cache=False)
def failing_with_retries(log: str) -> int:
    return always_fails(log)


@flow(retries=2, cache=False)
def flow_failing_with_retries(log: str) -> int:
    """Its body fails every time: three runs of the body in all."""
    note(log, f"body {os.getpid()}")
    raise RuntimeError("the body is broken")


@checkpoint(runtime="isolated")
def held_in_a_process(log: str, gate: str) -> int:
    note(log, f"isolated {os.getpid()}")
    while not Path(gate).exists():
        time.sleep(0.02)
    return os.getpid()


@flow(cache=False)
def isolated_hold(log: str, gate: str) -> int:
    return held_in_a_process(log, gate)


def main(argv: list[str]) -> None:
    """``python -c 'from tests.recovery._rc_flows import main; main(...)'``: run a flow.

    Prints the execution id first, then ``RESULT <value>`` or ``ERROR <status>``.
    """
    which, log, *rest = argv
    if which == "pipeline":
        handle = pipeline.run(log, int(rest[0]))
    elif which == "failing_with_retries":
        handle = failing_with_retries.run(log)
    elif which == "flow_failing_with_retries":
        handle = flow_failing_with_retries.run(log)
    elif which == "isolated_hold":
        handle = isolated_hold.run(log, rest[0])
    elif which == "gated_fan_out":
        handle = gated_fan_out.run(log, rest[0], int(rest[1]))
    else:
        handle = gated.run(log, rest[0])
    print(handle.exec_id, flush=True)
    try:
        print(f"RESULT {handle.wait(timeout=60)}", flush=True)
    except KitaruExecutionError as exc:
        print(f"ERROR {exc.status}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
