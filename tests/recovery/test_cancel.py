"""executions.cancel: the execution is cancelled at once; its runner stops at the next boundary."""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from pathlib import Path

import pytest

from kitaru import (
    ExecutionStatus,
    FlowHandle,
    KitaruBackendError,
    KitaruClient,
    KitaruExecutionError,
    KitaruStateError,
    checkpoint,
    flow,
)
from kitaru.client import CallStatus
from tests.recovery._rc_support import (
    REPO_ROOT,
    RUN_FLOW,
    child_env,
    counts,
    read_log,
    start,
    wait_for,
)


def test_cancel_stops_the_runner_at_the_next_checkpoint(any_store: str) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    @checkpoint
    def long_call() -> int:
        ran.append("long_call")
        started.set()
        release.wait(20)
        return 1

    @checkpoint
    def next_call(x: int) -> int:
        ran.append("next_call")
        return x + 1

    @flow
    def cancellable() -> int:
        return next_call(long_call())

    handle = cancellable.run()
    try:
        assert started.wait(10)
        client = KitaruClient()
        cancelled = client.executions.cancel(handle.exec_id)
        # Cancelled in the store at once, while the checkpoint is still running.
        assert cancelled.status is ExecutionStatus.CANCELLED
        assert cancelled.ended_at is not None
        assert handle.status is ExecutionStatus.CANCELLED
    finally:
        release.set()
    with pytest.raises(KitaruExecutionError) as info:
        handle.wait(timeout=20)
    assert info.value.status == "cancelled"
    assert info.value.exec_id == handle.exec_id
    assert "cancelled" in str(info.value)
    assert ran == ["long_call"]  # the runner stopped before next_call

    final = KitaruClient().executions.get(handle.exec_id)
    assert final.status is ExecutionStatus.CANCELLED
    assert "next_call" not in [c.call_id for c in final.checkpoints]
    # Nothing failed (no failure, no "runtime" origin, which means a Kitaru bug): the
    # status reason says why it stopped.
    assert final.failure is None
    assert final.status_reason == "cancelled by request"
    # A reader without the live handle sees the same error.
    with pytest.raises(KitaruExecutionError) as again:
        FlowHandle(handle.exec_id).wait(timeout=5)
    assert again.value.status == "cancelled"


def test_cancel_is_final_even_if_the_body_returns_without_another_checkpoint(
    any_store: str,
) -> None:
    started, release = threading.Event(), threading.Event()

    @checkpoint
    def only_call() -> str:
        started.set()
        release.wait(20)
        return "value"

    @flow
    def short() -> str:
        return only_call() + "!"

    handle = short.run()
    assert started.wait(10)
    KitaruClient().executions.cancel(handle.exec_id)
    release.set()
    with pytest.raises(KitaruExecutionError) as info:
        handle.wait(timeout=20)
    assert info.value.status == "cancelled"
    record = KitaruClient().executions.get(handle.exec_id)
    assert record.status is ExecutionStatus.CANCELLED
    assert FlowHandle(handle.exec_id).status is ExecutionStatus.CANCELLED


def test_cancel_interrupts_checkpoint_retries(any_store: str) -> None:
    tries: list[int] = []
    first_try = threading.Event()

    @checkpoint(retries=50)
    def never_works() -> None:
        tries.append(1)
        first_try.set()
        time.sleep(0.02)
        raise ConnectionError("down")

    @flow
    def hopeless() -> None:
        never_works()

    handle = hopeless.run()
    assert first_try.wait(10)
    KitaruClient().executions.cancel(handle.exec_id)
    with pytest.raises(KitaruExecutionError) as info:
        handle.wait(timeout=20)
    assert info.value.status == "cancelled"
    assert len(tries) < 50


@pytest.mark.parametrize("outcome", ["completed", "failed", "cancelled"])
def test_cancel_of_a_finished_execution_is_a_state_error(any_store: str, outcome: str) -> None:
    started, release = threading.Event(), threading.Event()

    @checkpoint
    def work(fail: bool) -> int:
        started.set()
        release.wait(20)
        if fail:
            raise RuntimeError("boom")
        return 1

    @flow
    def job(fail: bool) -> int:
        return work(fail)

    handle = job.run(outcome == "failed")
    client = KitaruClient()
    assert started.wait(10)
    if outcome == "cancelled":
        client.executions.cancel(handle.exec_id)
    release.set()
    with pytest.raises(KitaruExecutionError) if outcome != "completed" else nullcontext():
        handle.wait(timeout=20)
    before = client.executions.get(handle.exec_id)
    assert before.status.value == outcome
    with pytest.raises(KitaruStateError) as info:
        client.executions.cancel(handle.exec_id)
    assert handle.exec_id in str(info.value)
    assert outcome in str(info.value)
    assert client.executions.get(handle.exec_id) == before


def test_cancel_of_an_unknown_id_names_it(any_store: str) -> None:
    with pytest.raises(KitaruBackendError, match="Failed to load execution 'no-such-run'"):
        KitaruClient().executions.cancel("no-such-run")


def test_cancel_from_another_process_stops_the_runner(any_store: str, tmp_path: Path) -> None:
    """The runner is a child process; it learns of the cancel through its lease keeper."""
    log = tmp_path / "steps.log"
    gate = tmp_path / "gate"
    child = start(["-c", RUN_FLOW, "gated", str(log), str(gate)], cwd=REPO_ROOT, env=child_env())
    try:
        wait_for(lambda: "first start" in read_log(log), what="the child's first checkpoint")
        exec_id = KitaruClient().executions.latest(flow="gated").exec_id
        cancelled = KitaruClient().executions.cancel(exec_id)
        assert cancelled.status is ExecutionStatus.CANCELLED
        # The child's lease keeper polls every ~0.33 s (KITARU_LEASE_SECONDS=1).
        time.sleep(1.2)
        gate.touch()
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert out.split() == [exec_id, "ERROR", "cancelled"]
    assert counts(log) == {"first start": 1, "first end": 1}  # "second" never ran
    final = KitaruClient().executions.get(exec_id)
    assert final.status is ExecutionStatus.CANCELLED
    assert [c.call_id for c in final.checkpoints if c.status is CallStatus.COMPLETED] in (
        [],
        ["gated_first"],
    )
    assert "second" not in [c.call_id for c in final.checkpoints]


def test_cancel_during_a_flow_level_retry_stays_cancelled(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long pause between the failed run of the body and the next one.
    monkeypatch.setenv("KITARU_RETRY_BACKOFF", "1")
    failed_once = threading.Event()
    bodies: list[int] = []

    @checkpoint
    def after_retry() -> int:
        bodies.append(2)
        return 2

    @flow(retries=1)
    def flaky_body() -> int:
        if not bodies:
            bodies.append(1)
            failed_once.set()
            raise RuntimeError("first run of the body fails")
        return after_retry()

    handle = flaky_body.run()
    assert failed_once.wait(10)
    time.sleep(0.1)  # the driver is now sleeping before its retry
    assert KitaruClient().executions.cancel(handle.exec_id).status is ExecutionStatus.CANCELLED
    with pytest.raises(KitaruExecutionError) as info:
        handle.wait(timeout=20)
    assert info.value.status == "cancelled"
    assert bodies == [1]
    final = KitaruClient().executions.get(handle.exec_id)
    assert final.status is ExecutionStatus.CANCELLED
    assert final.lease_owner is None
