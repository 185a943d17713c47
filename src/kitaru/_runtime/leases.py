"""Runner leases: proof that the process running an execution is alive.

One daemon thread per process renews the leases of every execution running
here, a third of a lease period at a time. The same round trip reports each
execution's status, which is how a runner learns that another process
cancelled its execution (or took it over after a stall) and stops at the next
checkpoint boundary.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kitaru._store import ExecutionStatus

if TYPE_CHECKING:
    from kitaru._store import Store

logger = logging.getLogger("kitaru")

#: This process, as the owner recorded on executions it runs (pid alone can be reused).
RUNNER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_seconds() -> float:
    """How long a claim lasts without renewal (``KITARU_LEASE_SECONDS``, default 30)."""
    return float(os.environ.get("KITARU_LEASE_SECONDS", "30"))


@dataclass
class _Held:
    store: Store
    fence: int
    cancel: threading.Event


class LeaseKeeper:
    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, exec_id: str, store: Store, fence: int, cancel: threading.Event) -> None:
        with self._lock:
            self._held[exec_id] = _Held(store, fence, cancel)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="kitaru-leases", daemon=True
                )
                self._thread.start()

    def release(self, exec_id: str) -> None:
        with self._lock:
            self._held.pop(exec_id, None)

    def _loop(self) -> None:
        while True:
            self._wake.wait(lease_seconds() / 3)
            self._wake.clear()
            try:
                self.renew_once()
            except Exception:  # a failed renewal is retried next period
                logger.warning("Kitaru could not renew execution leases", exc_info=True)

    def renew_once(self) -> None:
        with self._lock:
            held = dict(self._held)
        by_store: dict[int, list[tuple[str, _Held]]] = {}
        for exec_id, entry in held.items():
            by_store.setdefault(id(entry.store), []).append((exec_id, entry))
        for entries in by_store.values():
            store = entries[0][1].store
            fences = {exec_id: entry.fence for exec_id, entry in entries}
            statuses = store.renew_leases(RUNNER_ID, fences, lease_seconds=lease_seconds())
            for exec_id, entry in entries:
                status = statuses.get(exec_id)
                if status not in (ExecutionStatus.RUNNING, ExecutionStatus.WAITING):
                    entry.cancel.set()


leases = LeaseKeeper()
