"""executions.delete: the record, its calls and unreferenced artifacts (and blob files) go."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kitaru import (
    ExecutionStatus,
    FlowHandle,
    KitaruBackendError,
    KitaruClient,
    KitaruExecutionError,
    KitaruStateError,
    KitaruUserCodeError,
    checkpoint,
    flow,
)
from kitaru._backend import get_backend
from kitaru.client import CallStatus

BIG = "y" * 100_000


@checkpoint(retries=1)
def small(n: int) -> int:
    return n + 1


@checkpoint
def large(n: int) -> str:
    return f"{n}:{BIG}"


@flow
def produce(n: int) -> int:
    return small(n) + len(large(n))


@flow(cache=False)
def produce_uncached(n: int) -> int:
    return small(n) + len(large(n))


def _artifact_ids(exec_id: str) -> set[str]:
    return {a.artifact_id for a in KitaruClient().artifacts.list(exec_id)}


def _blob_paths(exec_id: str) -> set[Path]:
    return {Path(a.uri) for a in KitaruClient().artifacts.list(exec_id) if a.uri}


def _gone(exec_id: str, artifact_ids: set[str], *, kept: frozenset[str] = frozenset()) -> None:
    store = get_backend().store
    client = KitaruClient()
    with pytest.raises(KitaruBackendError, match=exec_id):
        client.executions.get(exec_id)
    assert store.calls(exec_id) == []
    assert store.attempts(exec_id) == []
    assert {a.id for a in store.list_artifacts(exec_id=exec_id)} == kept
    for artifact_id in artifact_ids:
        assert store.get_artifact(artifact_id) is None
        with pytest.raises(KitaruBackendError):
            client.artifacts.get(artifact_id)
    assert exec_id not in [e.exec_id for e in client.executions.list()]


def test_delete_removes_the_execution_its_calls_artifacts_and_blob_files(
    any_store: str,
) -> None:
    handle = produce.run(1)
    handle.wait(timeout=20)
    artifact_ids = _artifact_ids(handle.exec_id)
    assert len(artifact_ids) == 4  # inputs, two outputs, result
    blobs = _blob_paths(handle.exec_id)
    assert len(blobs) == 1
    assert all(path.is_file() for path in blobs)

    assert KitaruClient().executions.delete(handle.exec_id) is None
    _gone(handle.exec_id, artifact_ids)
    assert not any(path.exists() for path in blobs)
    with pytest.raises(KitaruBackendError, match=handle.exec_id):
        KitaruClient().executions.delete(handle.exec_id)


def test_delete_of_a_failed_execution_removes_its_attempts(any_store: str) -> None:
    @checkpoint
    def fails() -> None:
        raise RuntimeError("nope")

    @flow
    def failing() -> None:
        small(1)
        fails()

    handle = failing.run()
    with pytest.raises(KitaruUserCodeError):
        handle.wait(timeout=20)
    artifact_ids = _artifact_ids(handle.exec_id)
    assert get_backend().store.attempts(handle.exec_id) != []
    KitaruClient().executions.delete(handle.exec_id)
    _gone(handle.exec_id, artifact_ids)


def test_delete_keeps_outputs_another_execution_reused_from_the_cache(any_store: str) -> None:
    first = produce.run(2)
    first.wait(timeout=20)
    second = produce.run(2)
    second.wait(timeout=20)
    client = KitaruClient()
    reused = client.executions.get(second.exec_id)
    assert [c.call_status for c in reused.checkpoints] == [CallStatus.CACHED, CallStatus.CACHED]
    shared = {a.artifact_id for c in reused.checkpoints for a in c.artifacts}
    own = _artifact_ids(first.exec_id) - shared
    assert len(own) == 2  # inputs and result of the first execution
    blobs = _blob_paths(first.exec_id)

    client.executions.delete(first.exec_id)
    _gone(first.exec_id, own, kept=frozenset(shared))
    # The second execution still reads the outputs it took from the first.
    after = client.executions.get(second.exec_id)
    assert after == reused
    assert [a.load() for c in after.checkpoints for a in c.artifacts] == [3, f"2:{BIG}"]
    assert all(path.is_file() for path in blobs)
    assert FlowHandle(second.exec_id).get() == 3 + len(f"2:{BIG}")


def test_delete_keeps_outputs_a_replay_reused(any_store: str) -> None:
    source = produce.run(3)
    source.wait(timeout=20)
    client = KitaruClient()
    submission = client.executions.replay(source.exec_id, at="large", wait=True)
    replay = client.executions.get(submission.results[0].replay_exec_id)
    reused = replay.checkpoints[0]
    assert reused.call_status is CallStatus.REUSED
    client.executions.delete(source.exec_id)
    assert client.executions.get(replay.exec_id).checkpoints[0].artifacts[0].load() == 4


def test_delete_keeps_a_blob_file_another_artifact_shares(any_store: str) -> None:
    """Blob files are content-addressed: two executions with equal outputs share one."""
    first = produce_uncached.run(4)
    first.wait(timeout=20)
    second = produce_uncached.run(4)
    second.wait(timeout=20)
    first_blobs = _blob_paths(first.exec_id)
    assert first_blobs == _blob_paths(second.exec_id)
    assert _artifact_ids(first.exec_id).isdisjoint(_artifact_ids(second.exec_id))

    KitaruClient().executions.delete(first.exec_id)
    assert all(path.is_file() for path in first_blobs)
    large_output = KitaruClient().executions.get(second.exec_id).checkpoints[1].artifacts[0]
    assert large_output.load() == f"4:{BIG}"


def test_deleting_every_execution_leaves_no_artifacts_or_blob_files(any_store: str) -> None:
    first = produce.run(5)
    first.wait(timeout=20)
    second = produce.run(5)  # reuses both outputs from the cache
    second.wait(timeout=20)
    blobs = _blob_paths(first.exec_id)
    client = KitaruClient()
    client.executions.delete(first.exec_id)
    client.executions.delete(second.exec_id)
    assert client.executions.list() == []
    assert get_backend().store.list_artifacts() == []
    assert not any(path.exists() for path in blobs)


def test_delete_of_a_running_execution_is_refused(any_store: str) -> None:
    started, release = threading.Event(), threading.Event()

    @checkpoint
    def busy() -> int:
        started.set()
        release.wait(20)
        return 1

    @flow
    def running() -> int:
        return busy()

    handle = running.run()
    client = KitaruClient()
    try:
        assert started.wait(10)
        before = client.executions.get(handle.exec_id)
        with pytest.raises(KitaruStateError) as info:
            client.executions.delete(handle.exec_id)
        assert handle.exec_id in str(info.value)
        assert "cancel" in str(info.value)
        assert client.executions.get(handle.exec_id) == before
    finally:
        release.set()
    assert handle.wait(timeout=20) == 1
    assert client.executions.get(handle.exec_id).status is ExecutionStatus.COMPLETED


def test_delete_of_an_unknown_id_names_it(any_store: str) -> None:
    with pytest.raises(KitaruBackendError, match="Failed to load execution 'no-such-execution'"):
        KitaruClient().executions.delete("no-such-execution")


def test_delete_right_after_cancel_leaves_no_rows_behind(any_store: str) -> None:
    started, release = threading.Event(), threading.Event()
    finished = threading.Event()

    @checkpoint
    def in_flight() -> str:
        started.set()
        release.wait(20)
        return "late output"

    @checkpoint
    def never() -> None:
        finished.set()

    @flow
    def doomed() -> None:
        in_flight()
        never()

    handle = doomed.run()
    client = KitaruClient()
    try:
        assert started.wait(10)
        client.executions.cancel(handle.exec_id)
        client.executions.delete(handle.exec_id)
    finally:
        release.set()
    with pytest.raises((KitaruBackendError, KitaruExecutionError)):
        handle.wait(timeout=20)
    assert not finished.is_set()
    store = get_backend().store
    assert store.get_execution(handle.exec_id) is None
    assert store.calls(handle.exec_id) == []
    assert store.list_artifacts(exec_id=handle.exec_id) == []
