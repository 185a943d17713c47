"""Checkpoint calls: the atomic record_call, upserts, attempts, and the cross-run cache query."""

from __future__ import annotations

import hashlib
import time

import pytest
import sqlalchemy as sa

from kitaru._store import Store, cache_keys, engine
from kitaru._store.records import (
    ArtifactRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
    RecordedCall,
    StaleOwnerError,
)
from kitaru.errors import KitaruBackendError

from ._support import Records


@pytest.fixture
def execution(store: Store, records: Records) -> ExecutionRecord:
    created = records.execution()
    store.create_execution(created)
    return created


def _with_artifact(call: CallRecord, artifact: ArtifactRecord | None) -> CallRecord:
    """What ``calls()`` returns for ``call``: the same record with its artifact joined in,
    and its cache key in the form the store keeps (``cache_keys``)."""
    call.artifact = artifact
    call.cache_key = cache_keys.stored(call.cache_key)
    return call


# -- record_call ----------------------------------------------------------------------


def test_record_call_writes_artifact_call_and_attempt(
    store: Store, records: Records, execution: ExecutionRecord
) -> None:
    payload = bytes(range(256)) + b"\x00trailing\x00"
    artifact = records.artifact(
        execution.id,
        "load_data",
        inline_data=payload,
        type_path="builtins.dict",
        tags=["train", "v2"],
    )
    call = records.call(
        execution.id,
        "load_data",
        0,
        artifact=artifact,
        type="llm_call",
        runtime="isolated",
        cache_key="0" * 32 + ":" + "f" * 64,
        attempts=1,
        metadata={"rows": 1200, "source": "s3://bucket/key", "ratio": 0.25},
    )
    attempt = records.attempt(execution.id, "load_data", 1, run=1, status="completed")

    store.record_call(call, artifact=artifact, attempt=attempt)

    loaded = store.calls(execution.id)
    assert loaded == [_with_artifact(call, artifact)]
    joined = loaded[0].artifact
    assert joined is not None
    assert type(joined.inline_data) is bytes
    assert joined.inline_data == payload
    assert isinstance(loaded[0].status, CallStatus)
    assert store.attempts(execution.id) == [attempt]
    assert store.get_artifact(artifact.id) == artifact


def test_record_call_without_artifact_or_attempt(
    store: Store, records: Records, execution: ExecutionRecord
) -> None:
    call = records.call(execution.id, "side_effect", 0, status=CallStatus.RUNNING, ended_at=None)
    store.record_call(call)
    assert store.calls(execution.id) == [call]
    assert store.calls(execution.id)[0].artifact is None
    assert store.attempts(execution.id) == []


def test_artifact_in_the_blob_store_round_trips(
    store: Store, records: Records, execution: ExecutionRecord
) -> None:
    artifact = records.artifact(
        execution.id,
        "big",
        inline_data=None,
        size=50_000_000,
        uri="file:///tmp/kitaru/artifacts/ab/abcdef",
        serializer="numpy",
    )
    call = records.call(execution.id, "big", 0, artifact=artifact)
    store.record_call(call, artifact=artifact)
    [loaded] = store.calls(execution.id)
    assert loaded.artifact == artifact
    assert loaded.artifact is not None
    assert loaded.artifact.inline_data is None


def test_calls_are_in_seq_order_and_per_execution(
    store: Store, records: Records, execution: ExecutionRecord
) -> None:
    other = records.execution()
    store.create_execution(other)
    made = [records.call(execution.id, f"step:{seq + 1}", seq) for seq in range(5)]
    for index in (3, 1, 4, 0, 2):
        store.record_call(made[index])
    store.record_call(records.call(other.id, "step", 0))

    assert [c.call_id for c in store.calls(execution.id)] == [c.call_id for c in made]
    assert [c.call_id for c in store.calls(other.id)] == ["step"]
    assert store.calls("no-such-execution") == []


def test_recorded_calls_are_what_a_resumed_run_reads(
    store: Store, records: Records, execution: ExecutionRecord
) -> None:
    inline = records.artifact(execution.id, "small", inline_data=b"[1, 2]", serializer="json")
    blob = records.artifact(
        execution.id, "big", inline_data=None, uri="file:///tmp/kitaru/ab/cd", size=70_000
    )
    made = [
        records.call(execution.id, "small", 0, artifact=inline),
        records.call(execution.id, "big", 1, artifact=blob, concurrent=True),
        records.call(execution.id, "broken", 2, status=CallStatus.FAILED, attempts=3),
    ]
    for index, artifact in ((2, None), (0, inline), (1, blob)):  # not in call order
        store.record_call(made[index], artifact=artifact)
    other = records.execution()
    store.create_execution(other)
    store.record_call(records.call(other.id, "small", 0))

    recorded = store.recorded_calls(execution.id)
    assert all(isinstance(call, RecordedCall) for call in recorded)
    assert recorded == [
        RecordedCall(
            c.call_id,
            c.seq,
            c.name,
            c.status,
            c.concurrent,
            c.attempts,
            *(
                (None,) * 7
                if a is None
                else (a.id, a.name, a.serializer, a.type_path, a.sha256, a.inline_data, a.uri)
            ),
        )
        for c, a in zip(made, (inline, blob, None), strict=True)
    ]
    assert recorded[1].concurrent
    assert not recorded[0].concurrent
    assert store.recorded_calls("no-such-execution") == []


def test_attempts_in_recording_order(
    store: Store, records: Records, execution: ExecutionRecord
) -> None:
    first = records.attempt(
        execution.id,
        "flaky",
        1,
        status="failed",
        exception_type="builtins.TimeoutError",
        message="timed out",
        traceback="Traceback ...",
    )
    second = records.attempt(execution.id, "flaky", 2, status="failed", run=1)
    other_call = records.attempt(execution.id, "other", 1, run=2)
    third = records.attempt(execution.id, "flaky", 3, status="completed", run=2)
    store.record_attempt(first)
    store.record_attempt(second)
    store.record_attempt(other_call)
    store.record_call(records.call(execution.id, "flaky", 0, attempts=3), attempt=third)

    assert store.attempts(execution.id) == [first, second, other_call, third]
    assert store.attempts("no-such-execution") == []


def test_failed_call_later_completed_is_one_row(
    store: Store, records: Records, execution: ExecutionRecord
) -> None:
    error = {"type": "builtins.ValueError", "message": "boom", "origin": "user_code"}
    failed = records.call(
        execution.id, "train", 2, status=CallStatus.FAILED, error=error, attempts=1
    )
    failed_attempt = records.attempt(execution.id, "train", 1, status="failed")
    store.record_call(failed, attempt=failed_attempt)
    assert store.calls(execution.id) == [failed]

    artifact = records.artifact(execution.id, "train", inline_data=b"model")
    completed = records.call(
        execution.id, "train", 2, artifact=artifact, status=CallStatus.COMPLETED, attempts=2
    )
    completed_attempt = records.attempt(execution.id, "train", 2, run=2)
    store.record_call(completed, artifact=artifact, attempt=completed_attempt)

    loaded = store.calls(execution.id)
    assert loaded == [_with_artifact(completed, artifact)]
    assert loaded[0].status is CallStatus.COMPLETED
    assert loaded[0].error is None
    assert loaded[0].attempts == 2
    assert store.attempts(execution.id) == [failed_attempt, completed_attempt]


def test_recording_the_same_output_again_is_idempotent(
    store: Store, records: Records, execution: ExecutionRecord
) -> None:
    artifact = records.artifact(execution.id, "step")
    call = records.call(execution.id, "step", 0, artifact=artifact)
    store.record_call(call, artifact=artifact)
    store.record_call(call, artifact=artifact)
    assert store.calls(execution.id) == [_with_artifact(call, artifact)]
    assert store.list_artifacts(exec_id=execution.id) == [artifact]


def test_record_call_is_atomic(store: Store, records: Records, execution: ExecutionRecord) -> None:
    artifact = records.artifact(execution.id, "step")
    call = records.call(execution.id, "step", 0, artifact=artifact)
    broken_attempt = records.attempt(execution.id, "step", 1)
    broken_attempt.started_at = None  # type: ignore[assignment]  # violates NOT NULL

    with pytest.raises((sa.exc.IntegrityError, KitaruBackendError)):
        store.record_call(call, artifact=artifact, attempt=broken_attempt)

    assert store.get_artifact(artifact.id) is None
    assert store.list_artifacts(exec_id=execution.id) == []
    assert store.calls(execution.id) == []
    assert store.attempts(execution.id) == []
    # The store is still usable after the rolled-back transaction.
    store.record_call(call, artifact=artifact, attempt=records.attempt(execution.id, "step"))
    assert store.calls(execution.id) == [_with_artifact(call, artifact)]


def test_failed_update_keeps_the_previous_call(
    store: Store, records: Records, execution: ExecutionRecord
) -> None:
    failed = records.call(execution.id, "step", 0, status=CallStatus.FAILED, error={"m": "x"})
    store.record_call(failed)
    artifact = records.artifact(execution.id, "step")
    completed = records.call(execution.id, "step", 0, artifact=artifact)
    broken_attempt = records.attempt(execution.id, "step", 2)
    broken_attempt.started_at = None  # type: ignore[assignment]

    with pytest.raises((sa.exc.IntegrityError, KitaruBackendError)):
        store.record_call(completed, artifact=artifact, attempt=broken_attempt)

    assert store.calls(execution.id) == [failed]
    assert store.get_artifact(artifact.id) is None


# -- cached_output ---------------------------------------------------------------------


def _key(name: str, inputs: str) -> str:
    """A cache key as the runtime builds it: 32 hex (name + code hash), ':', an input hash."""
    prefix = hashlib.md5(name.encode()).hexdigest()
    return f"{prefix}:{hashlib.sha256(inputs.encode()).hexdigest()}"


class _Cache:
    """Writes cacheable calls, each into a fresh execution."""

    def __init__(self, store: Store, records: Records) -> None:
        self.store = store
        self.records = records

    def add(
        self,
        cache_key: str | None,
        *,
        status: CallStatus = CallStatus.COMPLETED,
        ended_at: float | None = None,
        with_artifact: bool = True,
    ) -> CallRecord:
        execution = self.records.execution()
        self.store.create_execution(execution)
        artifact = None
        if with_artifact:
            artifact = self.records.artifact(
                execution.id, "step", inline_data=f"out-{execution.id}".encode()
            )
        call = self.records.call(
            execution.id, "step", 0, artifact=artifact, status=status, cache_key=cache_key
        )
        if ended_at is not None:
            call.ended_at = ended_at
        self.store.record_call(call, artifact=artifact)
        return _with_artifact(call, artifact)


def test_cached_output_finds_a_completed_call_by_key(store: Store, records: Records) -> None:
    cache = _Cache(store, records)
    key = _key("step@v1", "a")
    wanted = cache.add(key)
    cache.add(_key("step@v1", "b"))  # same checkpoint, other inputs
    cache.add(_key("other@v1", "a"))  # other checkpoint, same inputs
    cache.add(key[:-1])  # a key that is a prefix of this one
    cache.add(None)

    found = store.cached_output(key, exclude_exec_id="someone-else")

    assert found == wanted
    assert found is not None
    assert found.artifact is not None
    assert type(found.artifact.inline_data) is bytes
    assert found.artifact.inline_data == f"out-{wanted.exec_id}".encode()
    assert store.cached_output(_key("never", "recorded"), exclude_exec_id="x") is None


def test_cached_output_ignores_calls_that_did_not_complete_here(
    store: Store, records: Records
) -> None:
    """Only a live completion is a cache source; cached/reused calls point at their source."""
    cache = _Cache(store, records)
    for status in (CallStatus.FAILED, CallStatus.CACHED, CallStatus.REUSED, CallStatus.RUNNING):
        key = _key("step@v1", status.value)
        cache.add(key, status=status)
        assert store.cached_output(key, exclude_exec_id="x") is None, status
        completed = cache.add(key)
        assert store.cached_output(key, exclude_exec_id="x") == completed, status


def test_cached_output_needs_an_output_artifact(store: Store, records: Records) -> None:
    cache = _Cache(store, records)
    key = _key("step@v1", "no artifact")
    cache.add(key, with_artifact=False)
    assert store.cached_output(key, exclude_exec_id="x") is None


def test_cached_output_excludes_the_asking_execution(store: Store, records: Records) -> None:
    cache = _Cache(store, records)
    key = _key("step@v1", "mine")
    mine = cache.add(key, ended_at=2_000.0)
    assert store.cached_output(key, exclude_exec_id=mine.exec_id) is None
    older_elsewhere = cache.add(key, ended_at=1_000.0)
    assert store.cached_output(key, exclude_exec_id=mine.exec_id) == older_elsewhere
    assert store.cached_output(key, exclude_exec_id=older_elsewhere.exec_id) == mine


def test_cached_output_newest_completion_wins(store: Store, records: Records) -> None:
    cache = _Cache(store, records)
    key = _key("step@v2", "same inputs")
    newest = cache.add(key, ended_at=3_000.0)  # recorded first, but finished last
    cache.add(key, ended_at=1_000.0)
    cache.add(key, ended_at=2_000.0)

    assert store.cached_output(key, exclude_exec_id="x") == newest


# -- first attempts kept in the call row ---------------------------------------------------


@pytest.mark.store_internals
def test_a_first_attempt_success_is_read_from_the_call_row(
    store: Store, records: Records, execution: ExecutionRecord
) -> None:
    retried = records.attempt(execution.id, "flaky", 1, status="failed", run=1)
    store.record_attempt(retried)
    store.record_call(
        records.call(execution.id, "flaky", 0, attempts=2),
        attempt=records.attempt(execution.id, "flaky", 2, run=1),
    )
    quick = records.call(execution.id, "quick", 1, run=3)
    store.record_call(quick)  # no attempt row: the call row holds its only attempt

    with store.read() as conn:
        rows = conn.execute(sa.text("SELECT call_id FROM kitaru_checkpoint_attempts")).all()
    assert sorted(r[0] for r in rows) == ["flaky", "flaky"]
    by_call: dict[str, list[int]] = {}
    for attempt in store.attempts(execution.id):
        by_call.setdefault(attempt.call_id, []).append(attempt.attempt)
    assert by_call == {"flaky": [1, 2], "quick": [1]}
    (first,) = [a for a in store.attempts(execution.id) if a.call_id == "quick"]
    assert (first.run, first.status, first.started_at, first.ended_at) == (
        3,
        "completed",
        quick.started_at,
        quick.ended_at,
    )
    assert store.calls(execution.id)[1].run == 3


def test_an_attempt_row_and_a_call_row_run_do_not_double_count(
    store: Store, records: Records, execution: ExecutionRecord
) -> None:
    # A store written before the call row held first attempts has both.
    row = records.attempt(execution.id, "old", 1, run=1)
    store.record_call(records.call(execution.id, "old", 0, run=1), attempt=row)
    assert store.attempts(execution.id) == [row]


def test_a_connection_the_server_ended_is_replaced_before_a_write(
    postgres_url: str, records: Records
) -> None:
    store = Store(postgres_url)
    try:
        execution = records.execution()
        store.create_execution(execution)
        first = records.artifact(execution.id, "first")
        store.record_call(records.call(execution.id, "first", 0, artifact=first), artifact=first)
        # The server ends the session the write went out on (a restart, an idle timeout).
        fast = store._pg_direct
        assert fast is not None
        kept = fast._idle.get_nowait()
        fast._idle.put(kept)
        pid = kept.pooled.driver_connection.info.backend_pid
        with store.engine.connect() as conn:
            ended = conn.exec_driver_sql("SELECT pg_terminate_backend(%(pid)s)", {"pid": pid}).all()
        assert len(ended) == 1
        driver = kept.pooled.driver_connection
        for _ in range(500):  # the server's goodbye reaches the socket
            if engine.server_closed(driver):
                break
            time.sleep(0.01)
        else:
            pytest.fail("the ended session's socket never turned readable")
        # It used to fail this write (once); the ended connection is now replaced first.
        second = records.call(execution.id, "second", 1)
        store.record_call(second, artifact=records.artifact(execution.id, "second"))
        assert [c.call_id for c in store.calls(execution.id)] == ["first", "second"]
        assert driver.closed or kept not in list(fast._idle.queue)  # dropped, not reused
    finally:
        store.dispose()


# -- take_cached: find a hit and record the call that takes it --------------------------------


def _taker(store: Store, records: Records, *, fence: int = 1) -> CallRecord:
    execution = records.execution(status=ExecutionStatus.RUNNING, fence=fence, run_count=1)
    store.create_execution(execution)
    return records.call(
        execution.id, "step", 3, status=CallStatus.CACHED, attempts=0, cache_key=None
    )


def test_take_cached_records_the_hit_on_the_taking_call(store: Store, records: Records) -> None:
    cache = _Cache(store, records)
    key = _key("step@v1", "a")
    source = cache.add(key)
    taking = _taker(store, records)

    hit = store.take_cached(taking, key, fence=1)

    assert hit == source
    assert hit is not None
    assert hit.artifact is not None
    assert hit.artifact.inline_data == f"out-{source.exec_id}".encode()
    (recorded,) = store.calls(taking.exec_id)
    assert (recorded.status, recorded.artifact_id, recorded.source_exec_id, recorded.seq) == (
        CallStatus.CACHED,
        source.artifact_id,
        source.exec_id,
        3,
    )
    assert recorded.metadata == source.metadata
    assert recorded.artifact == source.artifact


def test_take_cached_without_a_hit_writes_nothing(store: Store, records: Records) -> None:
    _Cache(store, records).add(_key("step@v1", "a"))
    taking = _taker(store, records)
    assert store.take_cached(taking, _key("step@v1", "b"), fence=1) is None
    assert store.calls(taking.exec_id) == []


def test_take_cached_by_a_stale_runner_writes_nothing(store: Store, records: Records) -> None:
    key = _key("step@v1", "a")
    _Cache(store, records).add(key)
    taking = _taker(store, records, fence=2)
    with pytest.raises(StaleOwnerError):
        store.take_cached(taking, key, fence=1)
    assert store.calls(taking.exec_id) == []


def test_a_running_mark_that_lands_late_does_not_hide_the_calls_end(
    store: Store, records: Records, execution: ExecutionRecord
) -> None:
    """The progress thread's mark may be written after the call ended (it races the call's
    own final write): it must not turn a completed or just-failed call back into running."""
    failed = records.call(execution.id, "flaky", 0, status=CallStatus.FAILED, attempts=2)
    store.record_call(failed, fence=execution.fence)
    output = records.artifact(execution.id, "done")
    store.record_call(records.call(execution.id, "done", 1, artifact=output), artifact=output)
    for call_id, seq in (("flaky", 0), ("done", 1)):
        late = records.call(
            execution.id, call_id, seq, status=CallStatus.RUNNING, attempts=0, ended_at=None
        )
        store.mark_running(late, fence=execution.fence)
    assert {c.call_id: c.status for c in store.calls(execution.id)} == {
        "flaky": CallStatus.FAILED,
        "done": CallStatus.COMPLETED,
    }
    # A later run retrying the failed call (its mark counts the 2 earlier attempts) shows.
    retry = records.call(
        execution.id, "flaky", 0, status=CallStatus.RUNNING, attempts=2, ended_at=None
    )
    store.mark_running(retry, fence=execution.fence)
    (flaky, _) = store.calls(execution.id)
    assert (flaky.status, flaky.ended_at) == (CallStatus.RUNNING, None)
