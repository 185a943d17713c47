"""Runner leases: proof that the process running an execution is alive.

One daemon thread per process renews the leases of every execution running
here, a third of a lease period at a time. The same round trip reports each
execution's status, which is how a runner learns that another process
cancelled its execution (or took it over after a stall) and stops at the next
checkpoint boundary.

The lease owner also names the runner's process precisely enough (pid, its
start time, and the kernel + pid namespace those mean something in) for a
process on the same machine to tell that the runner is gone: ``runner_gone``
lets a resume take over at once instead of waiting out the lease.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING

from kitaru import _digest, _environ
from kitaru._ids import random_hex
from kitaru._store import ExecutionStatus

if TYPE_CHECKING:
    from kitaru._store import Store

logger = logging.getLogger("kitaru")

#: The store's lease_owner column holds at most this many characters.
_OWNER_MAX = 64


def _proc_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), None when it does not exist.

    A zombie (killed, not yet reaped) counts as gone. Linux only: elsewhere None.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22 of stat(5)


def _hostname() -> str:
    """``socket.gethostname()`` without importing ``socket`` or ``platform`` (a few ms of
    start-up each): on POSIX both are the kernel's node name (``uname``)."""
    uname = getattr(os, "uname", None)
    if uname is not None:
        return str(uname().nodename)
    import socket  # Windows

    return socket.gethostname()


def _machine_key() -> str:
    """Where a pid means this process: the kernel boot and the pid namespace.

    Two containers on one host may share a hostname but never a pid namespace;
    a rebooted machine reuses pids but has a new boot id.
    """
    parts = [_hostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            parts.append(f.read().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        pass  # not Linux: the hostname is all there is
    return _digest.sha256("|".join(parts).encode()).hexdigest()[:8]


_MACHINE = _machine_key()


def _runner_id() -> str:
    pid = os.getpid()
    tail = f"{pid}:{random_hex(4)}:{_MACHINE}:{_proc_start(pid) or '-'}"
    host = _hostname().replace(":", "-")[: _OWNER_MAX - len(tail) - 1]
    return f"{host}:{tail}"


#: This process, as the owner recorded on executions it runs:
#: ``host:pid:nonce:machine:start`` (pid alone can be reused).
RUNNER_ID = _runner_id()


def runner_gone(owner: str) -> bool:
    """True when ``owner`` (a lease owner) is a process of this machine that no longer runs.

    False when it may still run: it is alive, it is this process, it belongs to
    another machine or pid namespace, or its id is not one this version writes.
    """
    if owner == RUNNER_ID or sys.platform == "win32":
        return False
    parts = owner.rsplit(":", 4)
    if len(parts) != 5 or parts[3] != _MACHINE:
        return False
    _host, pid_text, _nonce, _machine, start = parts
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid <= 0:
        return False
    if start != "-":
        # The same pid with another start time is a new process that reused it.
        return _proc_start(pid) != start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # e.g. EPERM: it exists, as another user's process
    return False


def lease_seconds() -> float:
    """How long a claim lasts without renewal (``KITARU_LEASE_SECONDS``, default 30)."""
    return float(_environ.get("KITARU_LEASE_SECONDS", "30"))


def _now() -> float:
    """Wall-clock time: it runs on while the process is stopped (SIGSTOP, a frozen VM)."""
    return time.time()


class _Held:
    """An execution whose lease this process renews."""

    __slots__ = ("cancel", "fence", "margin", "store", "valid_until")

    def __init__(self, store: Store, fence: int, cancel: threading.Event) -> None:
        self.store, self.fence, self.cancel = store, fence, cancel
        lease = lease_seconds()
        #: Until when this process knows the lease holds (its claim or last renewal),
        #: and how long before that it asks the store again (a renewal period).
        self.valid_until, self.margin = _now() + lease, lease / 3

    def confirm(self, status: ExecutionStatus | None, asked_at: float, lease: float) -> bool:
        """Take the store's answer to a renewal asked at ``asked_at``: still ours, or cancel
        the execution here (cancelled, deleted or taken over)."""
        if status in (ExecutionStatus.RUNNING, ExecutionStatus.WAITING):
            self.valid_until = asked_at + lease
            return True
        self.cancel.set()
        return False


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

    def still_held(self, exec_id: str) -> bool:
        """Whether this process may start more of the execution's user code.

        Asked before each live checkpoint body. While the last renewal is recent (the
        usual case) this is a clock read. A process that was stopped past its lease (a
        debugger, SIGSTOP, a frozen VM) wakes up with its lease keeper racing its
        runner: it asks the store first, so a runner whose execution was taken over
        meanwhile starts no body (a paid call) beside the new owner's.
        """
        entry = self._held.get(exec_id)
        if entry is None:
            return True  # not a lease this process keeps (e.g. a child process's call)
        if _now() < entry.valid_until - entry.margin:
            return True
        asked_at, lease = _now(), lease_seconds()
        try:
            statuses = entry.store.renew_leases(
                RUNNER_ID, {exec_id: entry.fence}, lease_seconds=lease
            )
        except Exception:  # the store cannot say: the fenced write after the body will
            logger.debug("Could not confirm the lease of %s", exec_id, exc_info=True)
            return True
        return entry.confirm(statuses.get(exec_id), asked_at, lease)

    def _loop(self) -> None:
        while True:
            self._wake.wait(lease_seconds() / 3)
            self._wake.clear()
            try:
                self.renew_once()
            except Exception as exc:  # a failed renewal is retried next period
                # One line (a full disk would repeat it): the traceback only at debug.
                logger.warning("Kitaru could not renew execution leases: %s", exc)
                logger.debug("Lease renewal failure", exc_info=True)

    def renew_once(self) -> None:
        with self._lock:
            held = dict(self._held)
        by_store: dict[int, list[tuple[str, _Held]]] = {}
        for exec_id, entry in held.items():
            by_store.setdefault(id(entry.store), []).append((exec_id, entry))
        for entries in by_store.values():
            store = entries[0][1].store
            fences = {exec_id: entry.fence for exec_id, entry in entries}
            asked_at, lease = _now(), lease_seconds()
            statuses = store.renew_leases(RUNNER_ID, fences, lease_seconds=lease)
            for exec_id, entry in entries:
                entry.confirm(statuses.get(exec_id), asked_at, lease)


leases = LeaseKeeper()


def this_machine_owners() -> str:
    """A SQL LIKE pattern matching the lease owners of this machine's runners."""
    return f"%:{_MACHINE}:%"
