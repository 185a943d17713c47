"""Flows of the durable-time tests, run here and in child processes.

Imported as ``tests.durable_time._flows`` by the test process and by children
(which get the repository root on ``PYTHONPATH``), so an execution started in
one process can be resumed in another. ``cache=False`` everywhere: the tests
look at what really ran.
"""

from __future__ import annotations

import time

import kitaru
from kitaru import checkpoint, flow


@checkpoint(cache=False)
def stamp(label: str) -> float:
    """The wall-clock time the call ran (recorded once, reused on resume)."""
    return time.time()


@checkpoint(cache=False)
def double(x: int) -> int:
    return 2 * x


@flow(cache=False)
def napper(seconds: float) -> dict[str, float]:
    before = stamp("before")
    kitaru.sleep(seconds)
    after = stamp("after")
    return {"before": before, "after": after}


@flow(cache=False)
def child(x: int, nap: float = 0.0) -> int:
    if nap:
        kitaru.sleep(nap)
    return double(x)


@flow(cache=False)
def parent(n: int, nap: float = 0.0) -> int:
    handles = [child.run(i, nap) for i in range(n)]  # fan-out, then join each
    return sum(handle.wait() for handle in handles)


@flow(cache=False)
def echo(x: int) -> int:
    return x


@flow(cache=False)
def other(x: int) -> int:
    return x


@flow(cache=False)
def tick(label: str = "tick") -> str:
    return label


@checkpoint(cache=False)
def needs_marker(path: str) -> str:
    """Fails until the file at ``path`` exists (a cause the test fixes)."""
    with open(path, encoding="utf-8") as marker:
        return marker.read()


@flow(cache=False)
def fragile_child(path: str) -> str:
    return needs_marker(path)


@flow(cache=False)
def fragile_parent(path: str) -> str:
    return "parent got " + fragile_child.run(path).wait()


@checkpoint(cache=False)
def until_marker(path: str) -> str:
    """Waits (up to 60 s) for the file at ``path``: a child a test can cancel mid-run."""
    import os
    import time

    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(path, encoding="utf-8") as marker:
        return marker.read()


@flow(cache=False)
def slow_child(path: str) -> str:
    return until_marker(path)


@flow(cache=False)
def slow_parent(path: str) -> str:
    return "parent got " + slow_child.run(path).wait()
