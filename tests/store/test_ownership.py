"""Ownership and bulk writes: fenced claims, leases, orphans, replay inserts, deletion."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from kitaru._store import Store
from kitaru._store.records import (
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
    WaitRecord,
    WaitStatus,
)
from kitaru.errors import KitaruBackendError

from ._support import Records, new_id

RESUMABLE = [ExecutionStatus.FAILED, ExecutionStatus.WAITING, ExecutionStatus.RUNNING]


@pytest.fixture
def failed(store: Store, records: Records) -> ExecutionRecord:
    """A failed execution that ran once (fence 1), with a result and failure left over."""
    execution = records.execution(
        status=ExecutionStatus.FAILED,
        started_at=100.0,
        ended_at=200.0,
        run_count=1,
        fence=1,
        failure={"message": "boom"},
        result_artifact_id=new_id(),
    )
    store.create_execution(execution)
    return execution


def test_claim_takes_ownership(store: Store, failed: ExecutionRecord) -> None:
    claimed = store.claim(
        failed.id,
        owner="runner-b",
        lease_seconds=30,
        from_status=RESUMABLE,
        expected_fence=1,
        require_expired_lease=False,
        now=1_000.0,
    )

    assert claimed is not None
    assert claimed == store.get_execution(failed.id)
    assert claimed.status is ExecutionStatus.RUNNING
    assert (claimed.fence, claimed.run_count) == (2, 2)
    assert (claimed.lease_owner, claimed.lease_expires_at) == ("runner-b", 1_030.0)
    assert claimed.started_at == 100.0  # the first start is kept
    assert (claimed.ended_at, claimed.failure, claimed.result_artifact_id) == (None, None, None)


def test_claim_is_refused_on_a_stale_fence_or_status(store: Store, failed: ExecutionRecord) -> None:
    def claim(**overrides: object) -> ExecutionRecord | None:
        arguments: dict[str, object] = {
            "owner": "runner-b",
            "lease_seconds": 30,
            "from_status": RESUMABLE,
            "expected_fence": 1,
            "require_expired_lease": False,
        }
        arguments.update(overrides)
        return store.claim(failed.id, **arguments)  # type: ignore[arg-type]

    assert claim(expected_fence=0) is None
    assert claim(from_status=[ExecutionStatus.WAITING]) is None
    assert store.get_execution(failed.id) == failed  # refused claims change nothing
    assert (
        store.claim(
            new_id(),
            owner="o",
            lease_seconds=1,
            from_status=RESUMABLE,
            expected_fence=0,
            require_expired_lease=False,
        )
        is None
    )

    assert claim() is not None
    assert claim(owner="runner-c") is None  # the fence moved on with the first claim


def test_claim_can_require_an_expired_lease(store: Store, records: Records) -> None:
    execution = records.execution(lease_owner="runner-a", lease_expires_at=500.0, fence=3)
    store.create_execution(execution)

    def claim(now: float) -> ExecutionRecord | None:
        return store.claim(
            execution.id,
            owner="runner-b",
            lease_seconds=10,
            from_status=[ExecutionStatus.RUNNING],
            expected_fence=3,
            require_expired_lease=True,
            now=now,
        )

    assert claim(now=499.0) is None
    assert store.get_execution(execution.id) == execution
    taken = claim(now=501.0)
    assert taken is not None
    assert (taken.lease_owner, taken.fence) == ("runner-b", 4)


def test_exactly_one_concurrent_claim_wins(store: Store, failed: ExecutionRecord) -> None:
    contenders = 6
    start = threading.Barrier(contenders)
    results: list[ExecutionRecord | None] = []
    errors: list[BaseException] = []

    def contend(owner: str) -> None:
        try:
            start.wait()
            results.append(
                store.claim(
                    failed.id,
                    owner=owner,
                    lease_seconds=30,
                    from_status=RESUMABLE,
                    expected_fence=1,
                    require_expired_lease=False,
                )
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(f"runner-{i}",)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    winners = [r for r in results if r is not None]
    assert len(results) == contenders
    assert len(winners) == 1
    final = store.require_execution(failed.id)
    assert (final.fence, final.run_count) == (2, 2)
    assert final.lease_owner == winners[0].lease_owner


def test_finish_execution_with_a_stale_fence_writes_nothing(
    store: Store, records: Records, failed: ExecutionRecord
) -> None:
    claimed = store.claim(
        failed.id,
        owner="runner-b",
        lease_seconds=30,
        from_status=RESUMABLE,
        expected_fence=1,
        require_expired_lease=False,
    )
    assert claimed is not None
    result = records.artifact(failed.id, name="result", kind="flow_result")

    # The previous owner (fence 1) finishing late must not overwrite the new run.
    assert not store.finish_execution(
        failed.id, status=ExecutionStatus.COMPLETED, result=result, fence=1
    )
    assert store.get_execution(failed.id) == claimed
    assert store.get_artifact(result.id) is None

    assert store.finish_execution(
        failed.id, status=ExecutionStatus.COMPLETED, result=result, fence=2
    )
    assert store.require_execution(failed.id).result_artifact_id == result.id
    assert store.get_artifact(result.id) == result


def test_renew_leases(store: Store, records: Records) -> None:
    mine = records.execution(lease_owner="me", lease_expires_at=1.0, fence=1)
    waiting = records.execution(
        status=ExecutionStatus.WAITING, lease_owner="me", lease_expires_at=1.0, fence=1
    )
    taken_over = records.execution(lease_owner="other", lease_expires_at=1.0, fence=5)
    for execution in (mine, waiting, taken_over):
        store.create_execution(execution)
    missing = new_id()

    statuses = store.renew_leases(
        "me", {mine.id: 1, waiting.id: 1, taken_over.id: 4, missing: 0}, lease_seconds=60
    )

    assert statuses == {
        mine.id: ExecutionStatus.RUNNING,
        waiting.id: ExecutionStatus.WAITING,
        taken_over.id: ExecutionStatus.CANCELLED,  # its fence moved on: stop
        missing: None,
    }
    for execution in (mine, waiting):
        renewed = store.require_execution(execution.id).lease_expires_at
        assert renewed is not None
        assert renewed > 1_000_000_000
    assert store.require_execution(taken_over.id).lease_expires_at == 1.0  # not ours
    assert store.renew_leases("me", {}, lease_seconds=60) == {}


def test_renew_leases_of_many_executions(store: Store, records: Records) -> None:
    """A runner holding more executions than one statement binds renews them all."""
    held = [records.execution(lease_owner="me", lease_expires_at=1.0, fence=1) for _ in range(1100)]
    for execution in held:
        store.create_execution(execution)

    statuses = store.renew_leases("me", {e.id: 1 for e in held}, lease_seconds=60)

    assert statuses == {e.id: ExecutionStatus.RUNNING for e in held}
    for execution in (held[0], held[550], held[-1]):
        renewed = store.require_execution(execution.id).lease_expires_at
        assert renewed is not None
        assert renewed > 1_000_000_000


def test_orphaned_lists_running_executions_with_expired_leases(
    store: Store, records: Records
) -> None:
    expired = records.execution(lease_owner="a", lease_expires_at=100.0)
    never_leased = records.execution()
    alive = records.execution(lease_owner="b", lease_expires_at=10_000.0)
    waiting = records.execution(status=ExecutionStatus.WAITING, lease_expires_at=100.0)
    done = records.execution(status=ExecutionStatus.COMPLETED, lease_expires_at=100.0)
    for execution in (expired, never_leased, alive, waiting, done):
        store.create_execution(execution)

    assert [e.id for e in store.orphaned(now=5_000.0)] == [expired.id, never_leased.id]
    assert [e.id for e in store.orphaned(now=5_000.0, limit=1)] == [expired.id]
    assert [e.id for e in store.orphaned(now=20_000.0)] == [
        expired.id,
        never_leased.id,
        alive.id,
    ]


def test_orphaned_includes_waiting_executions_whose_input_arrived(
    store: Store, records: Records
) -> None:
    """A waiting execution needs a runner once its waits are resolved and nobody holds it."""
    answered = records.execution(status=ExecutionStatus.WAITING)
    still_waiting = records.execution(status=ExecutionStatus.WAITING)
    for execution in (answered, still_waiting):
        store.create_execution(execution)
        store.open_wait(
            WaitRecord(
                exec_id=execution.id,
                wait_id="approve",
                status=WaitStatus.PENDING,
                created_at=1.0,
            ),
            fence=execution.fence,
        )
    assert store.orphaned(now=5_000.0) == []
    assert store.answer_wait(answered.id, "approve", status=WaitStatus.ANSWERED, value=True)
    assert not store.answer_wait(answered.id, "approve", status=WaitStatus.ABORTED)
    assert [e.id for e in store.orphaned(now=5_000.0)] == [answered.id]


def test_create_execution_with_reused_calls(store: Store, records: Records) -> None:
    source = records.execution()
    store.create_execution(source)
    output = records.artifact(source.id, "load")
    store.record_call(records.call(source.id, "load", 0, artifact=output), artifact=output)

    replay = records.execution(original_exec_id=source.id)
    inputs = records.artifact(replay.id, name="inputs", kind="flow_inputs")
    copied = records.artifact(replay.id, "train", name="train")
    reused = [
        records.call(
            replay.id,
            "load",
            0,
            artifact=output,
            status=CallStatus.REUSED,
            source_exec_id=source.id,
        ),
        records.call(replay.id, "train", 1, artifact=copied, status=CallStatus.REUSED),
    ]
    store.create_execution(replay, inputs, calls=reused, artifacts=[copied])

    loaded = store.calls(replay.id)
    assert [c.call_id for c in loaded] == ["load", "train"]
    assert [c.artifact for c in loaded] == [output, copied]
    assert all(c.status is CallStatus.REUSED for c in loaded)
    assert store.get_artifact(inputs.id) == inputs


def test_insert_calls_writes_all_or_nothing(store: Store, records: Records) -> None:
    execution = records.execution()
    store.create_execution(execution)
    artifact = records.artifact(execution.id, "a")
    good = records.call(execution.id, "a", 0, artifact=artifact)
    bad = records.call(execution.id, "b", 1)
    bad.seq = None  # type: ignore[assignment]  # violates NOT NULL

    with pytest.raises((sa.exc.IntegrityError, KitaruBackendError)):
        store.insert_calls([good, bad], [artifact])
    assert store.calls(execution.id) == []
    assert store.get_artifact(artifact.id) is None

    store.insert_calls([good], [artifact])
    assert [c.artifact for c in store.calls(execution.id)] == [artifact]


def test_delete_execution(store: Store, records: Records) -> None:
    doomed = records.execution()
    keeper = records.execution()
    store.create_execution(doomed)
    store.create_execution(keeper)
    private = records.artifact(doomed.id, "private", inline_data=None, uri="file:///b/private")
    shared_blob = records.artifact(doomed.id, "dup", inline_data=None, uri="file:///b/same")
    cached_by_keeper = records.artifact(doomed.id, "src", inline_data=None, uri="file:///b/src")
    for seq, artifact in enumerate((private, shared_blob, cached_by_keeper)):
        assert artifact.call_id is not None
        store.record_call(
            records.call(doomed.id, artifact.call_id, seq, artifact=artifact),
            artifact=artifact,
            attempt=records.attempt(doomed.id, artifact.call_id),
        )
    # The keeper took one output through the cache and holds another copy of one blob.
    store.record_call(
        records.call(
            keeper.id,
            "src",
            0,
            artifact=cached_by_keeper,
            status=CallStatus.CACHED,
            source_exec_id=doomed.id,
        )
    )
    same_blob = records.artifact(keeper.id, "dup", inline_data=None, uri="file:///b/same")
    store.record_call(records.call(keeper.id, "dup", 1, artifact=same_blob), artifact=same_blob)

    orphaned_uris = store.delete_execution(doomed.id)

    assert orphaned_uris == ["file:///b/private"]
    assert store.get_execution(doomed.id) is None
    assert store.calls(doomed.id) == []
    assert store.attempts(doomed.id) == []
    assert store.get_artifact(private.id) is None
    assert store.get_artifact(shared_blob.id) is None
    assert store.get_artifact(cached_by_keeper.id) == cached_by_keeper
    assert [c.artifact for c in store.calls(keeper.id)] == [cached_by_keeper, same_blob]
    assert store.get_execution(keeper.id) == keeper
    assert store.delete_execution(doomed.id) == []  # deleting again is harmless
