"""executions.retry: failed executions only, same id, completed checkpoints reused."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kitaru import (
    ExecutionStatus,
    FailureOrigin,
    FlowHandle,
    KitaruBackendError,
    KitaruClient,
    KitaruDivergenceError,
    KitaruExecutionError,
    KitaruStateError,
    KitaruUserCodeError,
    checkpoint,
    flow,
)
from kitaru._backend import get_backend
from kitaru._runtime import control
from kitaru._store import RecordedCall, schema
from kitaru.client import CallStatus
from tests.recovery._rc_support import REPO_ROOT, RUN_FLOW, child_env, read_log, start, wait_for

runs: Counter[str] = Counter()
broken = {"transform": True, "body": False}


@pytest.fixture(autouse=True)
def _reset() -> None:
    runs.clear()
    broken.update(transform=True, body=False)


@checkpoint
def load(n: int) -> list[int]:
    runs["load"] += 1
    return list(range(n))


@checkpoint
def transform(values: list[int]) -> list[int]:
    runs["transform"] += 1
    if broken["transform"]:
        raise RuntimeError("transform is broken")
    return [v * 10 for v in values]


@checkpoint
def total(values: list[int]) -> int:
    runs["total"] += 1
    return sum(values)


@flow
def etl(n: int) -> int:
    values = transform(load(n))
    if broken["body"]:
        raise LookupError("the body is broken")
    return total(values)


def _failed_run() -> FlowHandle:
    handle = etl.run(4)
    with pytest.raises(KitaruUserCodeError, match="transform is broken"):
        handle.wait(timeout=20)
    return handle


def test_retry_reuses_completed_checkpoints_and_reruns_the_rest(any_store: str) -> None:
    handle = _failed_run()
    client = KitaruClient()
    failed = client.executions.get(handle.exec_id)
    assert failed.status is ExecutionStatus.FAILED
    assert runs == {"load": 1, "transform": 1}

    broken["transform"] = False
    retried = client.executions.retry(handle.exec_id)
    assert retried.exec_id == handle.exec_id
    # The original handle follows the same execution to its new result.
    assert handle.wait(timeout=20) == 60
    assert runs == {"load": 1, "transform": 2, "total": 1}

    final = client.executions.get(handle.exec_id)
    assert final.status is ExecutionStatus.COMPLETED
    assert final.failure is None
    assert final.run_count == 2
    assert final.original_exec_id is None
    assert final.started_at == failed.started_at
    assert final.ended_at is not None
    assert failed.ended_at is not None
    assert final.ended_at >= failed.ended_at
    assert [(c.call_id, c.call_status) for c in final.checkpoints] == [
        ("load", CallStatus.COMPLETED),
        ("transform", CallStatus.COMPLETED),
        ("total", CallStatus.COMPLETED),
    ]
    history = {
        c.call_id: [(a.attempt, a.run, a.status, a.exception_type) for a in c.attempts]
        for c in final.checkpoints
    }
    assert history == {
        "load": [(1, 1, "completed", None)],
        "transform": [(1, 1, "failed", "RuntimeError"), (2, 2, "completed", None)],
        "total": [(1, 2, "completed", None)],
    }
    assert final.checkpoints[1].artifacts[0].load() == [0, 10, 20, 30]
    # Only one execution exists: retry does not create a new one.
    assert [e.exec_id for e in client.executions.list()] == [handle.exec_id]


def test_retry_with_wait_returns_the_final_state(any_store: str) -> None:
    handle = _failed_run()
    broken["transform"] = False
    final = KitaruClient().executions.retry(handle.exec_id, wait=True)
    assert final.status is ExecutionStatus.COMPLETED
    assert FlowHandle(handle.exec_id).get() == 60


def test_a_retry_that_fails_again_records_a_third_run(any_store: str) -> None:
    handle = _failed_run()
    client = KitaruClient()
    second = client.executions.retry(handle.exec_id, wait=True)
    assert second.status is ExecutionStatus.FAILED
    assert second.failure is not None
    assert second.failure.message == "transform is broken"
    broken["transform"] = False
    third = client.executions.retry(handle.exec_id, wait=True)
    assert third.status is ExecutionStatus.COMPLETED
    assert third.run_count == 3
    assert runs == {"load": 1, "transform": 3, "total": 1}
    transform_call = third.checkpoints[1]
    assert [(a.attempt, a.run, a.status) for a in transform_call.attempts] == [
        (1, 1, "failed"),
        (2, 2, "failed"),
        (3, 3, "completed"),
    ]


def test_retry_after_the_body_failed_between_checkpoints(any_store: str) -> None:
    broken.update(transform=False, body=True)
    handle = etl.run(3)
    with pytest.raises(KitaruUserCodeError, match="the body is broken"):
        handle.wait(timeout=20)
    client = KitaruClient()
    failed = client.executions.get(handle.exec_id)
    assert failed.failure is not None
    assert failed.failure.checkpoint is None
    assert failed.failure.exception_type == "LookupError"

    broken["body"] = False
    client.executions.retry(handle.exec_id)
    assert handle.wait(timeout=20) == 30
    assert runs == {"load": 1, "transform": 1, "total": 1}


def test_retry_while_the_new_run_is_in_progress_wakes_the_original_handle(
    any_store: str,
) -> None:
    gate = threading.Event()
    attempts = Counter[str]()

    @checkpoint
    def fragile() -> str:
        attempts["fragile"] += 1
        if attempts["fragile"] == 1:
            raise RuntimeError("first time fails")
        gate.wait(20)
        return "second time works"

    @flow
    def fragile_flow() -> str:
        return fragile()

    handle = fragile_flow.run()
    with pytest.raises(KitaruUserCodeError):
        handle.wait(timeout=20)
    running = KitaruClient().executions.retry(handle.exec_id)
    assert running.status is ExecutionStatus.RUNNING
    assert handle.status is ExecutionStatus.RUNNING
    threading.Timer(0.1, gate.set).start()
    assert handle.wait(timeout=20) == "second time works"


@pytest.mark.parametrize("status", ["completed", "running", "cancelled"])
def test_retry_refuses_anything_but_failed_and_changes_nothing(any_store: str, status: str) -> None:
    started, release = threading.Event(), threading.Event()

    @checkpoint
    def step() -> int:
        started.set()
        release.wait(20)
        return 1

    @flow
    def single() -> int:
        return step()

    handle = single.run()
    client = KitaruClient()
    try:
        assert started.wait(10)
        if status == "completed":
            release.set()
            handle.wait(timeout=20)
        elif status == "cancelled":
            client.executions.cancel(handle.exec_id)
        before = client.executions.get(handle.exec_id)
        assert before.status.value == status
        with pytest.raises(KitaruStateError) as info:
            client.executions.retry(handle.exec_id)
        assert handle.exec_id in str(info.value)
        assert status in str(info.value)
        assert client.executions.get(handle.exec_id) == before
    finally:
        release.set()
    if status == "running":
        assert handle.wait(timeout=20) == 1
    elif status == "cancelled":
        with pytest.raises(KitaruExecutionError):
            handle.wait(timeout=20)


def test_retry_of_an_unknown_id_names_it(any_store: str) -> None:
    with pytest.raises(KitaruBackendError, match="Failed to load execution 'no-such-id'"):
        KitaruClient().executions.retry("no-such-id")


def test_retry_of_a_failed_replay_keeps_its_reused_outputs(any_store: str) -> None:
    broken["transform"] = False
    source = etl.run(2)
    assert source.wait(timeout=20) == 10
    runs.clear()
    client = KitaruClient()
    broken["transform"] = True
    submission = client.executions.replay(
        source.exec_id, at="transform", wait=True, on_error="collect"
    )
    assert submission.results[0].status == "failed"
    replay = client.executions.get(submission.results[0].replay_exec_id)
    assert replay.status is ExecutionStatus.FAILED
    assert runs == {"transform": 1}

    broken["transform"] = False
    final = client.executions.retry(replay.exec_id, wait=True)
    assert final.exec_id == replay.exec_id
    assert final.status is ExecutionStatus.COMPLETED
    assert final.original_exec_id == source.exec_id
    assert FlowHandle(replay.exec_id).get() == 10
    assert runs == {"transform": 2, "total": 1}  # load still reused from the source
    assert [(c.call_id, c.call_status) for c in final.checkpoints] == [
        ("load", CallStatus.REUSED),
        ("transform", CallStatus.COMPLETED),
        ("total", CallStatus.COMPLETED),
    ]


def test_retry_onto_code_that_skips_a_completed_checkpoint_diverges(any_store: str) -> None:
    @checkpoint
    def one() -> int:
        return 1

    fixed = {"two": False}

    @checkpoint
    def two(x: int) -> int:
        if not fixed["two"]:
            raise RuntimeError("two is broken")
        return x + 1

    @flow
    def changing() -> int:
        return two(one())

    handle = changing.run()
    with pytest.raises(KitaruUserCodeError):
        handle.wait(timeout=20)

    fixed["two"] = True

    @flow  # type: ignore[no-redef]
    def changing() -> int:
        return two(0)  # no longer calls one()

    KitaruClient().executions.retry(handle.exec_id)
    with pytest.raises(KitaruDivergenceError) as info:
        handle.wait(timeout=20)
    assert "recorded: one (one), two (two)" in str(info.value)
    assert "now:      two (two)" in str(info.value)
    failed = KitaruClient().executions.get(handle.exec_id)
    assert failed.failure is not None
    assert failed.failure.origin is FailureOrigin.DIVERGENCE


def test_two_concurrent_retries_exactly_one_runs(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = _failed_run()
    broken["transform"] = False
    barrier = threading.Barrier(2)
    real_load_flow = control.load_flow

    def load_then_meet(*args: Any, **kwargs: Any) -> Any:
        found = real_load_flow(*args, **kwargs)
        barrier.wait(10)  # both have read the failed record before either claims it
        return found

    monkeypatch.setattr(control, "load_flow", load_then_meet)
    outcomes: list[object] = []

    def retry() -> None:
        try:
            outcomes.append(KitaruClient().executions.retry(handle.exec_id))
        except KitaruStateError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    errors = [o for o in outcomes if isinstance(o, KitaruStateError)]
    assert len(outcomes) == 2
    assert len(errors) == 1
    assert handle.exec_id in str(errors[0])
    assert handle.wait(timeout=20) == 60
    assert runs == {"load": 1, "transform": 2, "total": 1}
    assert KitaruClient().executions.get(handle.exec_id).run_count == 2


def test_a_retry_refuses_a_damaged_recorded_output(any_store: str) -> None:
    """A memoized call checks its output's bytes against their checksum: never a wrong value.

    The output is small, so it is kept in its call row (``_store.call_outputs``).
    """
    handle = _failed_run()
    store = get_backend().store
    (load_call,) = [c for c in store.calls(handle.exec_id) if c.call_id == "load"]
    assert load_call.artifact_id == f"{handle.exec_id}:out:{load_call.seq}"
    calls = schema.checkpoint_calls
    with store.write() as conn:
        changed = conn.execute(
            calls.update()
            .where(calls.c.exec_id == handle.exec_id, calls.c.call_id == "load")
            .values(output_data=b"[0, 1, 2, 99]")
        )
        assert changed.rowcount == 1
    broken["transform"] = False
    client = KitaruClient()
    client.executions.retry(handle.exec_id)
    with pytest.raises(KitaruBackendError, match=r"call 'load'.* is corrupted"):
        handle.wait(timeout=20)
    final = client.executions.get(handle.exec_id)
    assert final.status is ExecutionStatus.FAILED
    assert final.failure is not None
    assert final.failure.origin is FailureOrigin.BACKEND
    assert runs == {"load": 1, "transform": 1}  # nothing ran on the damaged value
    # retry(wait=True) returns the failed execution (the runner's failure was recorded),
    # however the waiter and the runner's own report of it interleave.
    for _ in range(3):
        again = client.executions.retry(handle.exec_id, wait=True)
        assert again.status is ExecutionStatus.FAILED
        assert again.failure is not None
        assert again.failure.origin is FailureOrigin.BACKEND
    assert runs == {"load": 1, "transform": 1}


@pytest.mark.parametrize(
    "data",
    [b"[1, 2]", b" 7", b"7 ", b'{"a": NaN}', '"é"'.encode(), '"x"'.encode("utf-16")],
)
def test_recorded_json_outputs_load_as_json_loads_reads_them(data: bytes) -> None:
    call = RecordedCall(
        "c", 1, "c", "completed", False, 1, "a-1", "c", "json", None,
        hashlib.sha256(data).hexdigest(), data, None,
    )  # fmt: skip
    assert repr(get_backend().load_recorded(call)) == repr(json.loads(data))


def test_a_recorded_json_output_that_does_not_parse_is_a_backend_error() -> None:
    data = b"[1, 2"
    call = RecordedCall(
        "c", 1, "c", "completed", False, 1, "a-1", "c", "json", None,
        hashlib.sha256(data).hexdigest(), data, None,
    )  # fmt: skip
    with pytest.raises(KitaruBackendError, match="serializer 'json'"):
        get_backend().load_recorded(call)


def _kill_in_first_backoff(flow: str, log: Path, recorded: Callable[[str], bool]) -> str:
    """Run ``flow`` in a child that sits in its first retry backoff; SIGKILL it once
    ``recorded(exec_id)`` says its first failure is in the store. The execution id."""
    child = start(
        ["-c", RUN_FLOW, flow, str(log)],
        cwd=REPO_ROOT,
        env=child_env(KITARU_RETRY_BACKOFF="60"),
    )
    try:
        wait_for(lambda: len(read_log(log)) == 1, timeout=60, what="the first failure")
        exec_id = KitaruClient().executions.latest(flow=flow).exec_id
        wait_for(lambda: recorded(exec_id), what="its record")
        child.kill()
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return exec_id


def test_a_checkpoints_retries_go_on_after_its_runner_died(
    any_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # retries=2 is three attempts in all, even when the runner dies during a backoff and
    # the execution is resumed elsewhere: the budget goes on, it does not start over.
    log = tmp_path / "attempts.log"
    # Killed once its first failure is recorded (a failure it could not record is not
    # known to anyone, and does not count).
    exec_id = _kill_in_first_backoff(
        "failing_with_retries", log, lambda e: len(get_backend().store.attempts(e)) == 1
    )
    monkeypatch.setenv("KITARU_RETRY_BACKOFF", "0.01")
    final = KitaruClient().executions.resume(exec_id, wait=True)
    assert final.status is ExecutionStatus.FAILED
    assert len(read_log(log)) == 3  # one before the kill, two after it
    [call] = final.checkpoints
    assert [a.status for a in call.attempts] == [ExecutionStatus.FAILED] * 3
    assert [a.attempt_id.rsplit("#", 1)[1] for a in call.attempts] == ["1", "2", "3"]


def test_a_flows_retries_go_on_after_its_runner_died(
    any_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A flow's retries=2 is three runs of its body in all, even when its runner dies
    # during the flow's backoff and another process resumes the execution; a user's
    # retry of the failed execution then has a new budget.
    log = tmp_path / "bodies.log"
    store = get_backend().store
    exec_id = _kill_in_first_backoff(
        "flow_failing_with_retries", log, lambda e: store.require_execution(e).flow_retries == 1
    )
    monkeypatch.setenv("KITARU_RETRY_BACKOFF", "0.01")
    final = KitaruClient().executions.resume(exec_id, wait=True)
    assert final.status is ExecutionStatus.FAILED
    assert len(read_log(log)) == 3  # one before the kill, two after it
    assert store.require_execution(exec_id).flow_retries == 0  # ended: a new budget
    again = KitaruClient().executions.retry(exec_id, wait=True)
    assert again.status is ExecutionStatus.FAILED
    assert len(read_log(log)) == 6
