"""Executions: round trips, lookups, listing, and the run lifecycle updates."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from kitaru._store import Store
from kitaru._store.records import ExecutionRecord, ExecutionStatus
from kitaru.errors import KitaruBackendError, KitaruStateError

from ._support import Records, full_execution, new_id


def test_create_and_get_round_trip_every_field(store: Store, records: Records) -> None:
    execution = full_execution(records)
    store.create_execution(execution)

    loaded = store.get_execution(execution.id)
    assert loaded == execution
    assert loaded is not None
    assert isinstance(loaded.status, ExecutionStatus)
    assert loaded.created_at == 1_731_234_567.123456  # floats are not truncated


def test_minimal_execution_round_trips_with_defaults(store: Store, records: Records) -> None:
    execution = records.execution()
    store.create_execution(execution)
    loaded = store.get_execution(execution.id)
    assert loaded == execution
    assert loaded is not None
    assert loaded.metadata == {}
    assert loaded.failure is None
    assert loaded.replay_plan is None
    assert (loaded.run_count, loaded.fence) == (0, 0)


def test_create_execution_writes_the_inputs_artifact(store: Store, records: Records) -> None:
    execution = records.execution()
    inputs = records.artifact(execution.id, name="inputs", kind="flow_inputs", inline_data=b"{}")
    execution.inputs_artifact_id = inputs.id
    store.create_execution(execution, inputs=inputs)

    assert store.get_execution(execution.id) == execution
    assert store.get_artifact(inputs.id) == inputs


def test_create_execution_is_atomic_with_its_inputs(store: Store, records: Records) -> None:
    execution = records.execution()
    store.create_execution(execution)
    duplicate = records.execution(id=execution.id, flow_name="other")
    inputs = records.artifact(execution.id, kind="flow_inputs")

    with pytest.raises((sa.exc.IntegrityError, KitaruBackendError)):
        store.create_execution(duplicate, inputs=inputs)

    assert store.get_artifact(inputs.id) is None
    assert store.get_execution(execution.id) == execution


def test_unknown_execution(store: Store) -> None:
    unknown = new_id()
    assert store.get_execution(unknown) is None
    assert store.get_status(unknown) is None
    with pytest.raises(KitaruBackendError) as info:
        store.require_execution(unknown)
    assert f"Failed to load execution '{unknown}'" in str(info.value)


def test_require_execution_and_get_status(store: Store, records: Records) -> None:
    execution = records.execution(status=ExecutionStatus.WAITING)
    store.create_execution(execution)
    assert store.require_execution(execution.id) == execution
    status = store.get_status(execution.id)
    assert status is ExecutionStatus.WAITING


# -- listing ------------------------------------------------------------------------


@pytest.fixture
def listed(store: Store, records: Records) -> list[ExecutionRecord]:
    """Six executions, created oldest first, on two flows and several statuses."""
    plan = [
        ("etl", ExecutionStatus.COMPLETED),
        ("train", ExecutionStatus.FAILED),
        ("etl", ExecutionStatus.RUNNING),
        ("train", ExecutionStatus.COMPLETED),
        ("etl", ExecutionStatus.WAITING),
        ("etl", ExecutionStatus.COMPLETED),
    ]
    made = [records.execution(flow_name=flow, status=status) for flow, status in plan]
    # Insert in a scrambled order: listing must sort by created_at, not insertion order.
    for index in (3, 0, 5, 1, 4, 2):
        store.create_execution(made[index])
    return made


def _ids(executions: list[ExecutionRecord]) -> list[str]:
    return [e.id for e in executions]


def test_list_executions_newest_first(store: Store, listed: list[ExecutionRecord]) -> None:
    result = store.list_executions()
    assert _ids(result) == _ids(listed[::-1])
    assert result == listed[::-1]


def test_list_executions_filters(store: Store, listed: list[ExecutionRecord]) -> None:
    etl = [e for e in reversed(listed) if e.flow_name == "etl"]
    assert _ids(store.list_executions(flow="etl")) == _ids(etl)
    assert store.list_executions(flow="nope") == []

    completed = [e for e in reversed(listed) if e.status is ExecutionStatus.COMPLETED]
    assert _ids(store.list_executions(status=[ExecutionStatus.COMPLETED])) == _ids(completed)

    active = {ExecutionStatus.RUNNING, ExecutionStatus.WAITING}
    assert _ids(store.list_executions(status=["running", "waiting"])) == _ids(
        [e for e in reversed(listed) if e.status in active]
    )
    assert _ids(store.list_executions(flow="train", status=["completed"])) == [listed[3].id]
    assert store.list_executions(flow="train", status=["waiting"]) == []


def test_list_executions_limit_and_offset(store: Store, listed: list[ExecutionRecord]) -> None:
    newest_first = _ids(listed[::-1])
    assert _ids(store.list_executions(limit=2)) == newest_first[:2]
    assert _ids(store.list_executions(limit=2, offset=2)) == newest_first[2:4]
    assert _ids(store.list_executions(offset=4)) == newest_first[4:]  # offset alone
    assert _ids(store.list_executions(limit=10, offset=5)) == newest_first[5:]
    assert store.list_executions(limit=3, offset=6) == []
    assert store.list_executions(limit=0) == []
    etl = [e.id for e in reversed(listed) if e.flow_name == "etl"]
    assert _ids(store.list_executions(flow="etl", limit=2, offset=1)) == etl[1:3]


def test_list_executions_same_timestamp_is_deterministic(store: Store, records: Records) -> None:
    made = [records.execution(created_at=1_700_000_000.0) for _ in range(4)]
    for execution in made:
        store.create_execution(execution)
    expected = sorted(_ids(made), reverse=True)
    assert _ids(store.list_executions()) == expected
    pages = store.list_executions(limit=2) + store.list_executions(limit=2, offset=2)
    assert _ids(pages) == expected


# -- lifecycle ----------------------------------------------------------------------


def test_start_run_counts_runs_and_takes_the_lease(store: Store, records: Records) -> None:
    execution = records.execution(status=ExecutionStatus.WAITING, started_at=None)
    store.create_execution(execution)

    first = store.start_run(execution.id, owner="runner-a", lease_seconds=30, now=1_000.5)
    assert first.status is ExecutionStatus.RUNNING
    assert first.run_count == 1
    assert first.started_at == 1_000.5
    assert first.ended_at is None
    assert (first.lease_owner, first.lease_expires_at) == ("runner-a", 1_030.5)
    assert store.get_execution(execution.id) == first

    assert store.finish_execution(
        execution.id, status=ExecutionStatus.FAILED, failure={"message": "x"}, now=1_100.0
    )
    second = store.start_run(execution.id, owner="runner-b", lease_seconds=10, now=2_000.0)
    assert second.run_count == 2
    assert second.started_at == 1_000.5  # the first start is kept
    assert second.ended_at is None
    assert second.status is ExecutionStatus.RUNNING
    assert (second.lease_owner, second.lease_expires_at) == ("runner-b", 2_010.0)
    assert store.get_execution(execution.id) == second


def test_start_run_on_unknown_execution(store: Store) -> None:
    unknown = new_id()
    with pytest.raises(KitaruStateError, match=unknown):
        store.start_run(unknown, owner="o", lease_seconds=1)


def test_finish_execution_with_a_result(store: Store, records: Records) -> None:
    execution = records.execution()
    store.create_execution(execution)
    store.start_run(execution.id, owner="runner", lease_seconds=60, now=10.0)
    result = records.artifact(execution.id, name="result", kind="flow_result", inline_data=b"42")

    assert store.finish_execution(
        execution.id, status=ExecutionStatus.COMPLETED, result=result, now=12.25
    )

    finished = store.require_execution(execution.id)
    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.result_artifact_id == result.id
    assert finished.failure is None
    assert finished.ended_at == 12.25
    assert (finished.lease_owner, finished.lease_expires_at) == (None, None)
    assert finished.started_at == 10.0
    assert store.get_artifact(result.id) == result


def test_finish_execution_with_a_failure(store: Store, records: Records) -> None:
    execution = records.execution()
    store.create_execution(execution)
    store.start_run(execution.id, owner="runner", lease_seconds=60)
    failure = {
        "origin": "user_code",
        "type": "builtins.KeyError",
        "message": "'missing'",
        "traceback": "Traceback (most recent call last):\n  ...",
        "call_id": "step:2",
    }

    assert store.finish_execution(execution.id, status=ExecutionStatus.FAILED, failure=failure)

    finished = store.require_execution(execution.id)
    assert finished.status is ExecutionStatus.FAILED
    assert finished.failure == failure
    assert finished.result_artifact_id is None
    assert finished.ended_at is not None
    assert finished.lease_owner is None


def test_finish_execution_only_if_status(store: Store, records: Records) -> None:
    execution = records.execution(status=ExecutionStatus.RUNNING)
    store.create_execution(execution)
    assert store.set_status(execution.id, ExecutionStatus.CANCELLED)
    before = store.require_execution(execution.id)
    result = records.artifact(execution.id, name="result", kind="flow_result")

    changed = store.finish_execution(
        execution.id,
        status=ExecutionStatus.COMPLETED,
        result=result,
        only_if_status=[ExecutionStatus.RUNNING],
    )

    assert changed is False
    assert store.require_execution(execution.id) == before
    assert store.get_artifact(result.id) is None  # nothing written, not even the result
    assert store.list_artifacts(exec_id=execution.id) == []

    assert store.finish_execution(
        execution.id,
        status=ExecutionStatus.FAILED,
        failure={"message": "cancelled"},
        only_if_status=[ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED],
        now=5.0,
    )
    after = store.require_execution(execution.id)
    assert (after.status, after.failure, after.ended_at) == (
        ExecutionStatus.FAILED,
        {"message": "cancelled"},
        5.0,
    )


def test_finish_unknown_execution_returns_false(store: Store) -> None:
    assert store.finish_execution(new_id(), status=ExecutionStatus.COMPLETED) is False


def test_set_status(store: Store, records: Records) -> None:
    execution = records.execution(status=ExecutionStatus.RUNNING)
    other = records.execution(status=ExecutionStatus.RUNNING)
    store.create_execution(execution)
    store.create_execution(other)

    assert store.set_status(execution.id, ExecutionStatus.WAITING) is True
    assert store.get_status(execution.id) is ExecutionStatus.WAITING
    assert store.get_status(other.id) is ExecutionStatus.RUNNING  # only the one row

    before = store.require_execution(execution.id)
    assert (
        store.set_status(
            execution.id, ExecutionStatus.CANCELLED, only_if_status=[ExecutionStatus.RUNNING]
        )
        is False
    )
    assert store.require_execution(execution.id) == before

    assert store.set_status(
        execution.id,
        ExecutionStatus.RUNNING,
        only_if_status=[ExecutionStatus.WAITING, ExecutionStatus.FAILED],
    )
    assert store.require_execution(execution.id) == dataclasses.replace(
        before, status=ExecutionStatus.RUNNING
    )
    assert store.set_status(new_id(), ExecutionStatus.CANCELLED) is False


def test_a_postgresql_server_that_refuses_writes_is_a_backend_error(
    postgres_url: str, records: Records
) -> None:
    """A read-only database (a standby, ``default_transaction_read_only``): writes fail as
    the store failing (KitaruBackendError naming why), not as a bug in Kitaru."""
    writable = Store(postgres_url)
    execution = records.execution()
    writable.create_execution(execution)
    writable.dispose()
    read_only = Store(postgres_url + "%20-cdefault_transaction_read_only%3Don")
    try:
        assert read_only.require_execution(execution.id).id == execution.id  # reads work
        with pytest.raises(KitaruBackendError, match="read-only transaction"):
            read_only.set_status(execution.id, ExecutionStatus.CANCELLED)
    finally:
        read_only.dispose()
