"""Helpers shared by the fan-out tests: a concurrency tracker and store readers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kitaru import KitaruClient


def call_id(name: str, index: int) -> str:
    """The automatic call id of the ``index``-th (0-based) call of ``name``."""
    return name if index == 0 else f"{name}:{index + 1}"


@dataclass
class Tracker:
    """Records (label, start, end) of calls and the peak number running at once."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    running: int = 0
    peak: int = 0
    spans: dict[Any, tuple[float, float]] = field(default_factory=dict)
    finished: list[Any] = field(default_factory=list)
    threads: dict[Any, int] = field(default_factory=dict)

    def enter(self, label: Any) -> float:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.threads[label] = threading.get_ident()
        return time.monotonic()

    def leave(self, label: Any, started: float) -> None:
        with self.lock:
            self.running -= 1
            self.spans[label] = (started, time.monotonic())
            self.finished.append(label)

    def start(self, label: Any) -> float:
        return self.spans[label][0]

    def end(self, label: Any) -> float:
        return self.spans[label][1]


def calls(exec_id: str) -> dict[str, Any]:
    """call id -> CheckpointCall of an execution."""
    return {c.call_id: c for c in KitaruClient().executions.get(exec_id).checkpoints}


def outputs(exec_id: str) -> dict[str, Any]:
    """call id -> loaded output, for the calls that have one."""
    return {cid: c.output.load() for cid, c in calls(exec_id).items() if c.output is not None}


def statuses(exec_id: str) -> dict[str, str]:
    return {cid: c.status.value for cid, c in calls(exec_id).items()}
