"""Every fenced write must positively confirm that it wrote, on every store.

A runner that lost its execution (cancelled, or taken over after its lease ran
out) must learn it at its next write: the write raises ``StaleOwnerError`` or
returns False, and the store is left exactly as the new owner made it.
"""

from __future__ import annotations

import time

import pytest

from kitaru._store import Store
from kitaru._store.records import (
    CallRecord,
    ExecutionRecord,
    ExecutionStatus,
    StaleOwnerError,
    WaitRecord,
    WaitStatus,
)

from ._support import Records

RESUMABLE = [ExecutionStatus.FAILED, ExecutionStatus.WAITING, ExecutionStatus.RUNNING]


@pytest.fixture
def taken_over(store: Store, records: Records) -> ExecutionRecord:
    """A running execution whose first runner (fence 1) lost it to a second (fence 2)."""
    execution = records.execution(status=ExecutionStatus.RUNNING, fence=1, run_count=1)
    store.create_execution(execution)
    claimed = store.claim(
        execution.id,
        owner="runner-b",
        lease_seconds=30,
        from_status=RESUMABLE,
        expected_fence=1,
        require_expired_lease=False,
    )
    assert claimed is not None
    assert claimed.fence == 2
    return claimed


@pytest.fixture
def cancelled(store: Store, records: Records) -> ExecutionRecord:
    """An execution cancelled from elsewhere while its runner (fence 1) still ran."""
    execution = records.execution(status=ExecutionStatus.RUNNING, fence=1, run_count=1)
    store.create_execution(execution)
    assert store.finish_execution(
        execution.id,
        status=ExecutionStatus.CANCELLED,
        only_if_status=[ExecutionStatus.RUNNING],
    )
    return store.require_execution(execution.id)


def _call(records: Records, execution: ExecutionRecord, call_id: str = "step") -> CallRecord:
    return records.call(execution.id, call_id)


@pytest.mark.parametrize("with_artifact", [False, True])
@pytest.mark.parametrize("with_attempt", [False, True])
def test_a_stale_checkpoint_write_raises_and_writes_nothing(
    store: Store,
    records: Records,
    taken_over: ExecutionRecord,
    with_artifact: bool,
    with_attempt: bool,
) -> None:
    artifact = records.artifact(taken_over.id, "step") if with_artifact else None
    call = records.call(taken_over.id, "step", artifact=artifact)
    attempt = records.attempt(taken_over.id, "step") if with_attempt else None

    with pytest.raises(StaleOwnerError, match="no longer running under this runner"):
        store.record_call(call, artifact=artifact, attempt=attempt, fence=1)

    assert store.calls(taken_over.id) == []
    assert store.attempts(taken_over.id) == []
    if artifact is not None:
        assert store.get_artifact(artifact.id) is None
    assert store.require_execution(taken_over.id) == taken_over

    # The owner's own write goes through.
    store.record_call(call, artifact=artifact, attempt=attempt, fence=2)
    assert [c.call_id for c in store.calls(taken_over.id)] == ["step"]


def test_a_stale_checkpoint_write_with_saved_artifacts_raises(
    store: Store, records: Records, taken_over: ExecutionRecord
) -> None:
    saved = records.artifact(taken_over.id, "step", name="report", kind="artifact")
    output = records.artifact(taken_over.id, "step")
    call = records.call(taken_over.id, "step", artifact=output)

    with pytest.raises(StaleOwnerError):
        store.record_call(call, artifact=output, extra_artifacts=[saved], fence=1)

    assert store.calls(taken_over.id) == []
    assert store.get_artifact(saved.id) is None
    assert store.get_artifact(output.id) is None


@pytest.mark.parametrize("lone_row", [False, True])
def test_a_checkpoint_write_after_cancel_raises(
    store: Store, records: Records, cancelled: ExecutionRecord, lone_row: bool
) -> None:
    """``lone_row``: the usual checkpoint, its call row alone (one guarded statement on
    SQLite); else with its output artifact and an attempt row."""
    artifact = None if lone_row else records.artifact(cancelled.id, "step")
    call = records.call(cancelled.id, "step", artifact=artifact)
    attempt = None if lone_row else records.attempt(cancelled.id, "step")

    with pytest.raises(StaleOwnerError):
        store.record_call(call, artifact=artifact, attempt=attempt, fence=1)

    assert store.calls(cancelled.id) == []
    assert store.require_execution(cancelled.id).status is ExecutionStatus.CANCELLED


def test_a_stale_attempt_or_running_mark_raises(
    store: Store, records: Records, taken_over: ExecutionRecord
) -> None:
    with pytest.raises(StaleOwnerError):
        store.record_attempt(records.attempt(taken_over.id, "step"), fence=1)
    with pytest.raises(StaleOwnerError):
        store.mark_running(_call(records, taken_over), fence=1)
    assert store.attempts(taken_over.id) == []
    assert store.calls(taken_over.id) == []


def test_a_stale_flow_retry_start_is_refused(
    store: Store, taken_over: ExecutionRecord, cancelled: ExecutionRecord
) -> None:
    for execution in (taken_over, cancelled):
        assert store.start_run(execution.id, owner="runner-a", lease_seconds=30, fence=1) is None
    assert store.require_execution(taken_over.id) == taken_over
    assert store.require_execution(cancelled.id) == cancelled


def test_a_stale_finish_is_refused(
    store: Store, records: Records, taken_over: ExecutionRecord, cancelled: ExecutionRecord
) -> None:
    for execution in (taken_over, cancelled):
        result = records.artifact(execution.id, name="result", kind="flow_result")
        assert not store.finish_execution(
            execution.id,
            status=ExecutionStatus.COMPLETED,
            result=result,
            only_if_status=[ExecutionStatus.RUNNING],
            fence=1,
        )
        assert store.get_artifact(result.id) is None
    assert store.require_execution(taken_over.id) == taken_over
    assert store.require_execution(cancelled.id) == cancelled


def test_stale_wait_writes_are_refused(
    store: Store, records: Records, taken_over: ExecutionRecord
) -> None:
    wait = WaitRecord(
        exec_id=taken_over.id,
        wait_id="approve",
        name="approve",
        status=WaitStatus.PENDING,
        created_at=records.now(),
    )
    with pytest.raises(StaleOwnerError):
        store.open_wait(wait, fence=1)
    assert store.waits(taken_over.id) == []

    store.open_wait(wait, fence=2)
    assert not store.release_waiting(taken_over.id, "approve", fence=1)
    assert not store.continue_after_wait(taken_over.id, fence=1)
    current = store.require_execution(taken_over.id)
    assert current.status is ExecutionStatus.WAITING
    assert current.lease_owner == "runner-b"

    assert store.continue_after_wait(taken_over.id, fence=2)
    assert store.require_execution(taken_over.id).status is ExecutionStatus.RUNNING


def test_stale_metadata_write_is_refused(store: Store, taken_over: ExecutionRecord) -> None:
    with pytest.raises(StaleOwnerError):
        store.merge_execution_metadata(taken_over.id, {"k": 1}, fence=1)
    assert store.require_execution(taken_over.id).metadata in (None, {})
    assert store.merge_execution_metadata(taken_over.id, {"k": 1}, fence=2) == {"k": 1}


def test_a_stopped_writers_open_transaction_does_not_block_others_forever(
    postgres_url: str, records: Records
) -> None:
    """A process stopped inside a transaction (SIGSTOP, a VM freeze) holds its locks.

    On PostgreSQL the server ends such a session after a while (every Kitaru
    connection sets ``idle_in_transaction_session_timeout``), so the runner that
    took the execution over can write its events instead of hanging on the lock.
    """
    import sqlalchemy as sa

    from kitaru._store import _events

    stalled, taking_over = Store(postgres_url), Store(postgres_url)
    try:
        execution = records.execution()
        taking_over.create_execution(execution)
        held = stalled.engine.connect()
        held.begin()
        # What a writer holds mid-batch; then it stops, leaving the transaction open.
        held.execute(sa.select(sa.func.pg_advisory_xact_lock(_events._lock_key(execution.id))))

        event = _events.EventRow(exec_id=execution.id, kind="k", payload="{}", ts=1.0)
        taking_over.insert_events([event])  # waits for the server to end the stalled session

        assert [e.kind for e in taking_over.events(execution.id)] == ["k"]
        with pytest.raises(sa.exc.DBAPIError, match="idle-in-transaction timeout"):
            held.execute(sa.select(1))  # the stalled session was ended
        held.invalidate()
    finally:
        stalled.dispose()
        taking_over.dispose()


@pytest.mark.parametrize("path", ["one statement", "checked transaction"])
def test_a_takeover_waits_for_a_checked_write_in_flight(
    postgres_url: str, records: Records, path: str
) -> None:
    """The owner check and the write commit as one: a claim cannot slip in between.

    The runner's write is held (a lock on the artifacts table, as a slow disk or a
    stalled network would) after its fence check passed. The takeover must either wait
    for that write to commit, or make it fail: it must never return while the write is
    still to land (the write would then overwrite the new owner's records). Before
    the check took a row lock, the claim returned at once and the write landed after.
    """
    import threading

    import sqlalchemy as sa

    runner, taker, holder = Store(postgres_url), Store(postgres_url), Store(postgres_url)
    try:
        execution = records.execution(status=ExecutionStatus.RUNNING, fence=1, run_count=1)
        runner.create_execution(execution)
        artifact = records.artifact(execution.id, "step")
        call = records.call(execution.id, "step", artifact=artifact)
        held = holder.engine.connect()
        held.begin()
        held.execute(sa.text("LOCK TABLE kitaru_artifacts IN EXCLUSIVE MODE"))

        outcome: list[str] = []

        def write() -> None:
            try:
                if path == "one statement":
                    runner.record_call(call, artifact=artifact, fence=1)
                else:  # a kitaru.save() in the call: the checked-transaction path
                    saved = records.artifact(execution.id, "step", kind="saved")
                    runner.record_call(call, artifact=artifact, extra_artifacts=[saved], fence=1)
            except StaleOwnerError:
                outcome.append("refused")
            else:
                outcome.append("written")

        writing = threading.Thread(target=write)
        writing.start()
        blocked = sa.text(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'kitaru_artifacts' AND NOT l.granted"
        )
        with taker.engine.connect() as probe:
            for _ in range(500):
                if probe.execute(blocked).scalar():
                    break
                time.sleep(0.01)
            else:
                pytest.fail("the runner's write never reached the artifacts table")

        seen_at_claim: list[bool] = []

        def take_over() -> None:
            claimed = taker.claim(
                execution.id,
                owner="runner-b",
                lease_seconds=30,
                from_status=RESUMABLE,
                expected_fence=1,
                require_expired_lease=False,
            )
            assert claimed is not None
            seen_at_claim.append(bool(taker.calls(execution.id)))

        taking = threading.Thread(target=take_over)
        taking.start()
        taking.join(timeout=1.0)
        held.rollback()  # the runner's write goes on
        held.close()
        writing.join(timeout=30)
        taking.join(timeout=30)
        # Either the takeover waited for the write and saw it (the new owner reads it as
        # recorded), or the write saw the takeover and was refused: nothing lands after.
        assert len(outcome) == 1
        assert seen_at_claim == [outcome == ["written"]]
        landed = [c.call_id for c in taker.calls(execution.id)]
        assert landed == (["step"] if outcome == ["written"] else [])
    finally:
        for store in (runner, taker, holder):
            store.dispose()


def test_a_stale_runners_events_are_dropped_and_the_owners_stored(
    store: Store, taken_over: ExecutionRecord
) -> None:
    """Events carry their run's fence: the runner that lost the execution (fence 1) adds
    nothing to its stream; the owner's (fence 2) and unfenced events are stored."""
    from kitaru._store._events import EventRow

    def event(kind: str, fence: int | None) -> EventRow:
        return EventRow(taken_over.id, kind, '{"n": 1}', time.time(), call_id="step", fence=fence)

    store.insert_events([event("stale.one", 1), event("owner.one", 2), event("stale.two", 1)])
    store.insert_events([event("stale.three", 1)])  # a batch of only stale events
    store.insert_events([event("unfenced", None)])
    assert [e.kind for e in store.events(taken_over.id)] == ["owner.one", "unfenced"]


def test_a_stale_runners_log_lines_are_dropped_and_the_owners_stored(
    store: Store, taken_over: ExecutionRecord
) -> None:
    from kitaru._store.records_extra import LogRecord

    def line(message: str, fence: int | None) -> LogRecord:
        return LogRecord(taken_over.id, time.time(), "stdout", message, fence=fence)

    assert store.insert_logs([line("stale", 1), line("owner", 2), line("unfenced", None)]) == []
    assert store.insert_logs([line("stale again", 1)]) == []  # dropped, not "unstored"
    assert [r.message for r in store.logs(taken_over.id)] == ["owner", "unfenced"]
