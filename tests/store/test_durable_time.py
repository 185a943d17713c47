"""The store contract of durable time: sleeps and child joins, idempotent inserts, schedules.

Runs on SQLite and PostgreSQL, directly and through a Kitaru server (``kitaru+http://``).
"""

from __future__ import annotations

import threading

import pytest

from kitaru._store import (
    ExecutionStatus,
    ScheduleFireRecord,
    ScheduleRecord,
    StaleOwnerError,
    Store,
    SuspensionRecord,
    SuspensionStatus,
)

from ._support import Records, new_id


def _sleep(exec_id: str, wake_at: float, sleep_id: str = "sleep") -> SuspensionRecord:
    return SuspensionRecord(
        exec_id=exec_id,
        suspension_id=sleep_id,
        kind="sleep",
        status=SuspensionStatus.PENDING,
        created_at=wake_at - 10,
        wake_at=wake_at,
    )


def test_a_sleep_keeps_the_wake_up_time_it_was_first_recorded_with(
    store: Store, records: Records
) -> None:
    execution = records.execution(fence=3)
    store.create_execution(execution)
    first = store.open_suspension(_sleep(execution.id, 1000.5), fence=3)
    again = store.open_suspension(_sleep(execution.id, 2000.5), fence=3)  # a resumed body
    assert first.wake_at == again.wake_at == 1000.5
    assert again.status is SuspensionStatus.PENDING
    store.end_suspension(execution.id, "sleep", fence=3)
    (done,) = store.suspensions(execution.id)
    assert done.status is SuspensionStatus.DONE
    assert done.ended_at is not None
    assert store.suspensions_of([execution.id, "other"]) == {execution.id: [done]}


def test_suspension_writes_are_fenced(store: Store, records: Records) -> None:
    execution = records.execution(fence=2)
    store.create_execution(execution)
    with pytest.raises(StaleOwnerError):
        store.open_suspension(_sleep(execution.id, 1.0), fence=1)
    assert store.suspensions(execution.id) == []
    store.open_suspension(_sleep(execution.id, 1.0), fence=2)
    with pytest.raises(StaleOwnerError):
        store.end_suspension(execution.id, "sleep", fence=1)
    assert not store.release_suspended(execution.id, fence=1)
    assert store.get_status(execution.id) is ExecutionStatus.RUNNING


def test_a_released_sleep_is_orphaned_only_once_it_is_due(store: Store, records: Records) -> None:
    execution = records.execution(fence=1, lease_owner="someone", lease_expires_at=9e9)
    store.create_execution(execution)
    store.open_suspension(_sleep(execution.id, 5000.0), fence=1)
    assert store.release_suspended(execution.id, fence=1)
    released = store.get_execution(execution.id)
    assert released is not None
    assert released.status is ExecutionStatus.WAITING
    assert released.lease_owner is None
    assert not store.release_suspended(execution.id, fence=1)  # not running any more
    assert store.next_wake_at() == 5000.0
    assert [r.id for r in store.orphaned(now=4999.0)] == []
    assert [r.id for r in store.orphaned(now=5000.0)] == [execution.id]


def test_a_parent_waiting_for_a_child_is_due_once_the_child_ended(
    store: Store, records: Records
) -> None:
    parent = records.execution(fence=1)
    child = records.execution(parent_exec_id=parent.id)
    store.create_execution(parent)
    store.create_execution(child)
    join = SuspensionRecord(
        exec_id=parent.id,
        suspension_id=f"join:{child.id}",
        kind="child",
        status=SuspensionStatus.PENDING,
        created_at=1.0,
        child_exec_id=child.id,
    )
    store.open_suspension(join, fence=1)
    assert store.release_suspended(parent.id, fence=1)
    assert [c.id for c in store.children(parent.id)] == [child.id]
    orphans = {r.id for r in store.orphaned(now=0.0)}
    assert parent.id not in orphans
    store.finish_execution(child.id, status=ExecutionStatus.COMPLETED)
    assert parent.id in {r.id for r in store.orphaned(now=0.0)}
    assert [r.id for r in store.list_executions(parent=parent.id)] == [child.id]


def test_create_execution_once_inserts_one_of_racing_executions(
    store: Store, records: Records
) -> None:
    exec_id = new_id()
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def start(n: int) -> None:
        execution = records.execution(id=exec_id, metadata={"n": n})
        inputs = records.artifact(exec_id, kind="flow_inputs")
        stored, created = store.create_execution_once(execution, inputs)
        with lock:
            results.append((str(stored.metadata["n"]), created))

    threads = [threading.Thread(target=start, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(created for _, created in results) == 1
    winner = next(n for n, created in results if created)
    assert {n for n, _ in results} == {winner}  # everyone got the winner's record back
    assert len(store.list_artifacts(exec_id=exec_id)) == 1  # the losers' inputs never landed


def test_schedules_round_trip_and_each_slot_is_claimed_once(store: Store, records: Records) -> None:
    schedule = ScheduleRecord(
        name="digest",
        flow_name="daily",
        flow_ref={"module": "pkg.flows", "qualname": "daily"},
        cron="0 7 * * *",
        timezone="Europe/Berlin",
        cursor=100.0,
        created_at=100.0,
        inputs={"topic": "news", "n": 3},
        stack="local",
        missed="run_once",
    )
    assert store.create_schedule(schedule)
    assert not store.create_schedule(schedule)
    assert store.get_schedule("digest") == schedule
    assert store.list_schedules() == [schedule]
    assert store.set_schedule_paused("digest", True)
    assert store.get_schedule("digest").paused  # type: ignore[union-attr]
    assert store.set_schedule_paused("digest", False, cursor=150.0)
    assert store.get_schedule("digest").cursor == 150.0  # type: ignore[union-attr]
    store.advance_schedule("digest", 120.0)  # never backwards
    assert store.get_schedule("digest").cursor == 150.0  # type: ignore[union-attr]
    store.advance_schedule("digest", 200.0)
    assert store.get_schedule("digest").cursor == 200.0  # type: ignore[union-attr]
    assert not store.set_schedule_paused("ghost", True)

    claims: list[bool] = []
    lock = threading.Lock()

    def claim(worker: int) -> None:
        fire = ScheduleFireRecord("digest", 7200.0, new_id(), f"worker-{worker}", 7200.5)
        won = store.claim_slot(fire)
        with lock:
            claims.append(won)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claims) == [False] * 5 + [True]
    assert [f.slot for f in store.schedule_fires("digest")] == [7200.0]

    started = records.execution(schedule_name="digest", schedule_slot=7200.0)
    store.create_execution(started)
    store.create_execution(records.execution())
    assert [r.id for r in store.list_executions(schedule="digest")] == [started.id]
    assert store.delete_schedule("digest")
    assert not store.delete_schedule("digest")
    assert store.schedule_fires("digest") == []
