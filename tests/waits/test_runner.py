"""The runner side of a wait: woken at once, let go after timeout, resumed on input."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest

from kitaru import ExecutionStatus, KitaruStateError, KitaruTimeoutError
from kitaru._backend import get_backend
from kitaru._runtime import waits
from kitaru.client import KitaruClient
from kitaru.worker import run_worker
from tests.waits import _flows
from tests.waits.conftest import (
    assert_not_finished,
    eventually,
    exec_threads,
    wait_for_status,
    wait_until_live_waiting,
    wait_until_released,
)


@pytest.fixture
def no_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    """``handle.wait()`` must not offer a prompt here: stdin is not a terminal."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


def test_live_runner_is_woken_in_process_without_polling(
    any_store: str, client: KitaruClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a one-minute store poll, only the in-process event can wake the runner in time.
    monkeypatch.setattr(waits, "POLL_SECONDS", 60.0)
    handle = _flows.typed.run("int", 120)
    wait_until_live_waiting(client, handle.exec_id)
    (runner,) = exec_threads(handle.exec_id)
    time.sleep(0.05)  # the runner is blocked in its wait now

    given = time.perf_counter()
    client.executions.input(handle.exec_id, value=5)
    result = handle.wait(timeout=30)
    latency = _flows.STARTED[handle.exec_id] - given

    # The same runner thread carried on: not a resume, not a new thread.
    assert result["data"] == 5
    assert result["before"] == result["after"]
    assert result["after"]["thread"] == runner.name
    assert result["after"]["ident"] == runner.ident
    assert result["after"]["pid"] == os.getpid()
    assert client.executions.get(handle.exec_id).run_count == 1
    print(f"in-process wake: input() -> next checkpoint in {latency * 1000:.1f} ms")
    assert latency < 10  # a sanity bound far below the 60 s poll


def test_runner_lets_go_after_timeout_and_input_resumes_it_here(
    any_store: str, client: KitaruClient
) -> None:
    handle = _flows.typed.run("str", 0.3)
    wait_until_live_waiting(client, handle.exec_id)
    assert len(exec_threads(handle.exec_id)) == 1

    execution = wait_until_released(client, handle.exec_id)
    # Nothing is held: no thread, no lease; the execution is still waiting.
    assert exec_threads(handle.exec_id) == []
    assert execution.status is ExecutionStatus.WAITING
    assert execution.pending_wait is not None
    assert execution.pending_wait.wait_id == "ask-str"
    assert execution.lease_owner is None
    time.sleep(0.3)
    assert client.executions.get(handle.exec_id).status is ExecutionStatus.WAITING
    assert handle.status is ExecutionStatus.WAITING

    # Input resumes it automatically, in this process (the one that gave the input).
    client.executions.input(handle.exec_id, value="later")
    result = handle.wait(timeout=30)
    assert result["data"] == "later"
    assert result["after"]["pid"] == os.getpid()
    assert result["after"]["thread"].startswith("kitaru-exec-")
    final = client.executions.get(handle.exec_id)
    assert final.status is ExecutionStatus.COMPLETED
    assert final.run_count == 2
    # The checkpoint before the wait ran once; the resumed body reused it.
    assert [len(c.attempts) for c in final.checkpoints] == [1, 1]
    eventually(lambda: not exec_threads(handle.exec_id), what="the resumed runner to end")


def test_timeout_zero_releases_at_once_and_none_is_the_default(client: KitaruClient) -> None:
    released = _flows.typed.run("bool", 0)
    wait_until_released(client, released.exec_id)

    # 0.21: timeout=None is the default, 600 s of holding the runner (not "forever").
    forever = _flows.typed.run("bool", None)
    execution = wait_until_live_waiting(client, forever.exec_id)
    assert execution.pending_wait is not None
    assert execution.pending_wait.timeout == 600
    time.sleep(0.3)
    assert len(exec_threads(forever.exec_id)) == 1
    assert client.executions.get(forever.exec_id).lease_owner is not None

    client.executions.input(released.exec_id, value=True)
    client.executions.input(forever.exec_id, value=False)
    assert released.wait(timeout=30)["data"] is True
    assert forever.wait(timeout=30)["data"] is False


def test_resume_after_input_with_resume_false(any_store: str, client: KitaruClient) -> None:
    handle = _flows.typed.run("model", 0)
    wait_until_released(client, handle.exec_id)

    client.executions.input(handle.exec_id, value={"title": "queued"}, resume=False)
    # Answered, but nobody runs it: still waiting, no runner, no thread.
    time.sleep(0.2)
    execution = client.executions.get(handle.exec_id)
    assert execution.status is ExecutionStatus.WAITING
    assert execution.pending_waits == []
    assert execution.lease_owner is None
    assert exec_threads(handle.exec_id) == []
    # A worker would pick it up: its waits are all answered.
    assert [r.id for r in get_backend().store.orphaned()] == [handle.exec_id]

    resumed = client.executions.resume(handle.exec_id, wait=True)
    assert resumed.status is ExecutionStatus.COMPLETED
    assert handle.wait(timeout=5)["data"] == {"title": "queued", "steps": 1}
    (seen,) = _flows.SEEN[handle.exec_id]
    assert isinstance(seen, _flows.Plan)


def test_worker_resumes_a_waiting_execution_whose_wait_was_answered(
    client: KitaruClient,
) -> None:
    handle = _flows.gate.run(0)
    wait_until_released(client, handle.exec_id)
    # Pending, unanswered waits are not the worker's business.
    assert run_worker(once=True) == 0
    client.executions.input(handle.exec_id, resume=False)
    assert run_worker(once=True) == 1
    assert handle.wait(timeout=30) == "through"


def test_resume_of_a_waiting_execution_without_input_is_a_state_error(
    client: KitaruClient,
) -> None:
    """0.21's contract: resuming an execution with pending waits is a KitaruStateError;
    the input is what continues it."""
    handle = _flows.typed.run("int", 0)
    before = wait_until_released(client, handle.exec_id)
    with pytest.raises(KitaruStateError, match=r"waiting for input \(wait 'ask-int'\)") as caught:
        client.executions.resume(handle.exec_id)
    assert f"kitaru executions input {handle.exec_id}" in str(caught.value)
    after = client.executions.get(handle.exec_id)
    assert after.status is ExecutionStatus.WAITING
    assert after.run_count == before.run_count == 1
    assert [w.wait_id for w in after.pending_waits] == ["ask-int"]
    client.executions.input(handle.exec_id, value=3)
    assert handle.wait(timeout=30)["data"] == 3


@pytest.mark.parametrize("released", [False, True], ids=["live", "released"])
def test_handle_wait_keeps_waiting_until_input_from_another_thread(
    any_store: str, client: KitaruClient, no_tty: None, released: bool
) -> None:
    handle = _flows.typed.run("int", 0.2 if released else 60)
    wait_until_live_waiting(client, handle.exec_id) if not released else None

    # A bounded wait on a waiting execution times out; it does not fail the execution
    # (which, on a loaded machine, may reach its wait only after the timeout).
    with pytest.raises(KitaruTimeoutError, match="did not finish"):
        handle.wait(timeout=0.3)
    eventually(lambda: handle.status is ExecutionStatus.WAITING, what="the execution waiting")
    if released:
        wait_until_released(client, handle.exec_id)

    def answer() -> None:
        time.sleep(0.4)
        KitaruClient().executions.input(handle.exec_id, value=99)

    giver = threading.Thread(target=answer)
    giver.start()
    try:
        result = handle.wait(timeout=30)
    finally:
        giver.join(timeout=30)
    assert result["data"] == 99
    assert client.executions.get(handle.exec_id).run_count == (2 if released else 1)


def test_cancel_a_waiting_execution(any_store: str, client: KitaruClient) -> None:
    live = _flows.typed.run("bool", 60)
    wait_until_live_waiting(client, live.exec_id)
    released = _flows.typed.run("bool", 0)
    wait_until_released(client, released.exec_id)

    for handle in (live, released):
        client.executions.cancel(handle.exec_id)
        wait_for_status(client, handle.exec_id, "cancelled")
        eventually(lambda h=handle: not exec_threads(h.exec_id), what="the runner to end")
        assert client.executions.pending_waits(handle.exec_id) == []
        with pytest.raises(KitaruStateError):
            client.executions.input(handle.exec_id, value=True)


# --- retries and replays wait like a normal run ---------------------------------------------


def test_flow_retry_that_reaches_a_wait_waits(
    any_store: str, client: KitaruClient, tmp_path: Path
) -> None:
    handle = _flows.flaky_with_retries.run(str(tmp_path / "marker"), 30)
    execution = wait_until_live_waiting(client, handle.exec_id)
    assert execution.run_count == 2  # the failed first attempt, then the retry
    assert execution.pending_wait is not None
    assert execution.pending_wait.wait_id == "number"
    assert_not_finished(client, handle.exec_id)
    client.executions.input(handle.exec_id, value=4)
    assert handle.wait(timeout=30) == {"value": 4, "replay": False}


def test_executions_retry_that_reaches_a_wait_waits(
    any_store: str, client: KitaruClient, tmp_path: Path
) -> None:
    handle = _flows.flaky.run(str(tmp_path / "marker"), 0)
    wait_for_status(client, handle.exec_id, "failed")
    client.executions.retry(handle.exec_id)
    execution = wait_until_released(client, handle.exec_id)
    assert execution.pending_wait is not None
    assert execution.pending_wait.wait_id == "number"
    client.executions.input(handle.exec_id, value=8)
    assert handle.wait(timeout=30) == {"value": 8, "replay": False}
    assert client.executions.get(handle.exec_id).run_count == 3


def test_replay_keeps_the_answers_before_at_and_asks_again_after_it(
    any_store: str, client: KitaruClient
) -> None:
    source = _flows.ask_between.run(0)
    wait_until_released(client, source.exec_id)
    client.executions.input(source.exec_id, value=1)
    assert source.wait(timeout=30) == {"value": 1, "tail": "b-1", "replay": False}
    from kitaru.handle import FlowHandle

    # Replaying from the checkpoint after the wait: the body reaches the wait again, and
    # it keeps the source's answer, as the calls before `at` keep their outputs.
    after = client.executions.replay(source.exec_id, at="step:2", wait=True)
    (row,) = after.results
    assert client.executions.get(row.replay_exec_id).status is ExecutionStatus.COMPLETED
    assert FlowHandle(row.replay_exec_id).get() == {"value": 1, "tail": "b-1", "replay": True}

    # Replaying from before the wait: the wait comes after `at`, so it asks again.
    submission = client.executions.replay(source.exec_id, at="step", wait=False)
    replay = client.executions.get(submission.results[0].replay_exec_id)
    execution = wait_until_released(client, replay.exec_id)
    assert execution.original_exec_id == source.exec_id
    assert execution.pending_wait is not None
    assert execution.pending_wait.wait_id == "number"
    client.executions.input(replay.exec_id, value=2)
    final = client.executions.wait(replay.exec_id, timeout=30)
    assert final.status is ExecutionStatus.COMPLETED
    assert FlowHandle(replay.exec_id).get() == {"value": 2, "tail": "b-2", "replay": True}
    # The source keeps its own answer.
    assert source.wait(timeout=5)["value"] == 1
