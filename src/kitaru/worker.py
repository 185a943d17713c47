"""Resume orphaned executions: ``kitaru worker`` and ``python -m kitaru.worker [EXEC_ID]``.

An execution is orphaned when it is running but its runner stopped renewing
its lease (the process was killed, the machine lost power). A worker only
needs the store URL (``KITARU_STORE_URL`` or the default embedded store) and
access to the flows' code.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kitaru._backend import get_backend
from kitaru._runtime import control
from kitaru._runtime.failures import describe, is_backend_error
from kitaru._runtime.leases import runner_gone, this_machine_owners
from kitaru._runtime.loader import FlowCodeNotFoundError
from kitaru._store import ExecutionRecord, ExecutionStatus
from kitaru.client import Execution, KitaruClient
from kitaru.errors import KitaruError, KitaruStateError

if TYPE_CHECKING:
    from kitaru._backend import Backend
    from kitaru._store import Store

logger = logging.getLogger("kitaru.worker")

#: Orphans read from the store at a time.
_PAGE = 100


def run_worker(
    *,
    poll_interval: float = 1.0,
    once: bool = False,
    stop: threading.Event | None = None,
    schedules: bool = True,
) -> int:
    """Poll the store and resume orphaned executions here; returns how many it resumed.

    Runs until ``stop`` is set (or after one pass with ``once``). Executions
    this worker cannot load are reported once and skipped afterwards. It also
    fires due schedule slots (``schedules=False``: not this worker) and wakes up
    for the next released sleep or slot that is due before its next poll.
    """
    stop = stop or threading.Event()
    backend = get_backend()
    resumed = 0
    skipped: set[str] = set()
    warned: set[str] = set()
    store_down, firing_fails = _Trouble(), _Trouble()
    while not stop.is_set():
        next_slot = _fire_schedules(backend, warned, firing_fails) if schedules else None
        try:
            resumed += _resume_orphans(backend, skipped)
        except Exception as exc:
            if once or not is_backend_error(exc):
                raise
            store_down.began(
                "The store is unreachable (%s); this worker keeps polling and goes on once "
                "it answers.",
                describe(exc),
            )
        else:
            store_down.ended("The store answers again; this worker goes on.")
        if once:
            break
        stop.wait(
            poll_interval if store_down.on else _pause(backend.store, poll_interval, next_slot)
        )
    return resumed


class _Trouble:
    """A failure that may last (the store or the server down): said once when it begins
    and once when it ends, not at every poll."""

    def __init__(self) -> None:
        self.on = False

    def began(self, message: str, *args: object) -> None:
        if not self.on:
            logger.warning(message, *args)
        self.on = True

    def ended(self, message: str) -> None:
        if self.on:
            logger.warning(message)
        self.on = False


def _resume_orphans(backend: Backend, skipped: set[str]) -> int:
    """Resume every orphan there is now (one poll); how many this worker took."""
    resumed = 0
    for record in _orphans(backend.store):
        if record.id in skipped:
            continue
        try:
            control.resume(backend, record.id)
        except Exception as exc:
            if isinstance(exc, KitaruStateError) and not isinstance(exc, FlowCodeNotFoundError):
                # Another process took it first; if that one dies, a later poll retries.
                logger.info("Not resuming execution %s: %s", record.id, exc)
                continue
            if is_backend_error(exc):
                raise  # the store failed: the whole poll is retried
            # Not runnable here (its code, its stack or its inputs are missing in this
            # worker's environment): say so once, and go on with the others. Other
            # workers of the store may have what it needs; a restart looks again.
            skipped.add(record.id)
            logger.warning(
                "Skipping execution %s (flow %s): %s", record.id, record.flow_name, describe(exc)
            )
            continue
        resumed += 1
        logger.info("Resumed execution %s (flow %s)", record.id, record.flow_name)
    return resumed


def _fire_schedules(backend: Backend, warned: set[str], trouble: _Trouble) -> float | None:
    """Fire due schedule slots; when the next one is due (None: no schedule, or failed)."""
    try:
        from kitaru.schedules._firing import fire_due

        next_slot = fire_due(backend, warned=warned)
    except Exception as exc:  # the store failed: retried on the next poll
        trouble.began(
            "Could not fire schedules: %s; this worker tries again at every poll and says "
            "when it works again.",
            exc,
        )
        return None
    trouble.ended("Schedules fire again.")
    return next_slot


def _pause(store: Store, poll_interval: float, next_slot: float | None) -> float:
    """Until the next poll, or sooner when a released sleep or a slot is due before it."""
    due = [] if next_slot is None else [next_slot]
    try:
        wake_at = store.next_wake_at()
    except Exception:  # an older server without durable time: plain polling
        wake_at = None
    if wake_at is not None:
        due.append(wake_at)
    if not due:
        return poll_interval
    return max(0.0, min(poll_interval, min(due) - time.time()))


def _orphans(store: Store) -> Iterator[ExecutionRecord]:
    """Every orphan there is now, read a page at a time (a page is not a limit).

    Also running executions whose runner was a process of this machine that is
    gone: their lease has not run out yet, but nobody will renew it.
    """
    after: tuple[float, str] | None = None
    while True:
        page = store.orphaned(limit=_PAGE, after=after)
        yield from page
        if len(page) < _PAGE:
            break
        after = (page[-1].created_at, page[-1].id)
    for record in store.leased_running(owner_like=this_machine_owners()):
        if record.lease_owner is not None and runner_gone(record.lease_owner):
            yield record


def _wait_until_settled(client: KitaruClient, exec_id: str) -> Execution:
    """Until the execution finishes or pauses at a wait."""
    while True:
        execution = client.executions.get(exec_id)
        if execution.status.is_finished or execution.status is ExecutionStatus.WAITING:
            return execution
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kitaru.worker",
        description="Resume one execution by id, or keep resuming orphaned executions.",
    )
    parser.add_argument("exec_id", nargs="?", help="resume this execution and wait for it")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.exec_id is None:
        try:
            run_worker(poll_interval=args.poll_interval)
        except KeyboardInterrupt:
            return 130
        return 0
    client = KitaruClient()
    try:
        client.executions.resume(args.exec_id)
        execution = _wait_until_settled(client, args.exec_id)
    except KitaruError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if execution.status is ExecutionStatus.WAITING:
        from kitaru.client._prompt import let_go_here

        let_go_here([args.exec_id])  # resumes by itself once input arrives
        print(f"{execution.exec_id} waiting")
        return 0
    print(f"{execution.exec_id} {execution.status.value}")
    return 0 if execution.status.is_successful else 1


if __name__ == "__main__":
    sys.exit(main())
