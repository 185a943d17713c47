"""Making long checkpoint calls visible as ``running`` without slowing short ones.

Writing a "running" row when every checkpoint starts would double the cost of
a checkpoint (two commits instead of one). Instead the call registers here (a
dict insert) and one background thread per process records a ``running`` row
for calls still in flight after ``KITARU_RUNNING_MARK_AFTER`` seconds (default
1). The LLM and tool calls worth watching get marked; millisecond checkpoints
never pay for it. The row is written through the execution's fence and never
replaces a completed call, nor one the call's own run recorded as failed, so a
mark that loses the race with the call's end is harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kitaru import _environ

logger = logging.getLogger("kitaru")

_POLL_SECONDS = 0.1


def mark_after() -> float:
    return float(_environ.get("KITARU_RUNNING_MARK_AFTER", "1.0"))


class _InFlight:
    """A call in flight: when it started, and how to mark it running."""

    __slots__ = ("mark", "marked", "started")

    def __init__(self, started: float, mark: Callable[[], None]) -> None:
        self.started, self.mark, self.marked = started, mark, False


class InFlightCalls:
    def __init__(self) -> None:
        self._calls: dict[int, _InFlight] = {}
        self._lock = threading.Lock()
        self._next = 0
        self._thread: threading.Thread | None = None

    def begin(self, mark: Callable[[], None]) -> int:
        """Register a call in flight; ``mark`` writes its running row if it lasts."""
        with self._lock:
            self._next += 1
            token = self._next
            self._calls[token] = _InFlight(time.monotonic(), mark)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="kitaru-progress", daemon=True
                )
                self._thread.start()
        return token

    def end(self, token: int) -> None:
        with self._lock:
            self._calls.pop(token, None)

    def _loop(self) -> None:
        while True:
            time.sleep(_POLL_SECONDS)
            threshold = time.monotonic() - mark_after()
            with self._lock:
                due = [c for c in self._calls.values() if not c.marked and c.started <= threshold]
                for call in due:
                    call.marked = True
            for call in due:
                try:
                    call.mark()
                except Exception:  # cancelled, taken over, or the store hiccuped
                    logger.debug("Could not mark a checkpoint call as running", exc_info=True)


in_flight = InFlightCalls()
