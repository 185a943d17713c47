"""1,000 executions waiting at once hold no threads or processes, and all finish on input."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kitaru import ExecutionStatus
from kitaru._backend import get_backend
from kitaru.client import KitaruClient
from tests.waits import _flows
from tests.waits.conftest import child_pids, eventually, exec_threads

COUNT = 1000


@pytest.mark.slow
def test_a_thousand_waiting_executions_hold_nothing(any_store: str, client: KitaruClient) -> None:
    store = get_backend().store
    # Warm up: the process-wide helper threads (lease keeper, ...) exist from now on.
    warm = _flows.numbered.run(-1, 0)
    eventually(lambda: store.pending_waits(warm.exec_id), what="the warm-up wait")
    client.executions.input(warm.exec_id, value=0)
    assert warm.wait(timeout=30) == -1000
    eventually(lambda: not exec_threads(), what="the warm-up runner to end")
    threads_before = threading.active_count()
    children_before = child_pids()

    started = time.perf_counter()
    handles = [_flows.numbered.run(i, 0) for i in range(COUNT)]
    ids = {h.exec_id for h in handles}
    eventually(
        lambda: len(store.pending_waits()) == COUNT and not exec_threads(),
        timeout=120,
        what=f"{COUNT} released waits",
        pause=0.25,  # each check reads every pending wait
    )
    waiting_at = time.perf_counter()

    # Nothing is held while they wait: no runner thread, no lease, no process.
    assert exec_threads() == []
    assert threading.active_count() <= threads_before
    assert child_pids() == children_before
    waiting = client.executions.list(status="waiting", limit=COUNT + 10)
    assert {e.exec_id for e in waiting} == ids
    assert all(e.lease_owner is None and e.lease_expires_at is None for e in waiting)
    assert {w.exec_id for w in client.executions.pending_waits()} == ids

    # Every input resumes its execution in this process; they all complete correctly.
    def answer(i: int) -> None:
        KitaruClient().executions.input(handles[i].exec_id, value=i + 1)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(answer, range(COUNT)))
    results = [h.wait(timeout=120) for h in handles]
    done_at = time.perf_counter()
    assert results == [i * 1000 + i + 1 for i in range(COUNT)]
    finished = client.executions.list(status="completed", limit=COUNT + 10)
    assert {e.exec_id for e in finished} >= ids
    assert all(client.executions.get(h.exec_id).run_count == 2 for h in handles[:20])
    eventually(lambda: not exec_threads(), what="every runner to end")
    assert threading.active_count() <= threads_before
    assert child_pids() == children_before
    assert client.executions.pending_waits() == []
    assert client.executions.get(handles[0].exec_id).status is ExecutionStatus.COMPLETED
    print(
        f"{COUNT} executions: waiting after {waiting_at - started:.1f} s, "
        f"all answered and completed after another {done_at - waiting_at:.1f} s"
    )
