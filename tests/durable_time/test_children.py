"""Child flows: ``other_flow.run()`` in a flow body is a durable call of the parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kitaru import KitaruExecutionError, KitaruStateError
from kitaru._backend import get_backend
from kitaru._store import ExecutionStatus
from kitaru.client import KitaruClient
from kitaru.handle import FlowHandle
from tests.durable_time import _flows
from tests.waits.conftest import (
    child_env,
    eventually,
    kitaru_cli,
    one_error_line,
    wait_until_released,
)


def test_fan_out_children_are_recorded_calls_of_the_parent(
    any_store: str, client: KitaruClient
) -> None:
    handle = _flows.parent.run(3)
    assert handle.wait() == 0 + 2 + 4
    execution = client.executions.get(handle.exec_id)
    assert len(execution.children) == 3
    calls = [c for c in execution.checkpoints if c.checkpoint_type == "flow"]
    assert [c.name for c in calls] == ["child", "child", "child"]
    for child_id in execution.children:
        child = client.executions.get(child_id)
        assert child.parent_exec_id == handle.exec_id
        assert child.flow_name == "child"
        assert child.status is ExecutionStatus.COMPLETED
    shown = kitaru_cli("executions", "get", handle.exec_id, "-o", "json")
    assert json.loads(shown.stdout)["item"]["children"] == execution.children


@pytest.mark.parametrize("by", ["worker", "resume"])
def test_a_killed_parent_resumes_with_the_same_children(
    any_store: str, client: KitaruClient, spawn: Callable[..., subprocess.Popen[str]], by: str
) -> None:
    script = (
        "from tests.durable_time._flows import parent\n"
        "handle = parent.run(2, 1.5)\n"
        "print(handle.exec_id, flush=True)\n"
        "handle.wait()\n"
    )
    runner = spawn("-c", script)
    assert runner.stdout is not None
    exec_id = runner.stdout.readline().strip()
    store = get_backend().store
    eventually(lambda: len(store.children(exec_id)) == 2, what="both children to start")
    eventually(
        lambda: len([c for c in store.calls(exec_id) if c.type == "flow"]) == 2,
        what="both child calls to be recorded",
    )
    os.killpg(runner.pid, signal.SIGKILL)  # parent and children die mid-sleep
    runner.communicate()
    before = sorted(c.id for c in store.children(exec_id))

    # A worker resumes every orphan; `resume` of the parent alone resumes the children
    # it joins too (their runner died with it), without waiting for a worker.
    command = ["worker", "--once"] if by == "worker" else ["executions", "resume", exec_id]
    worker = subprocess.run(
        [sys.executable, "-m", "kitaru.cli", *command],
        capture_output=True,
        text=True,
        timeout=90,
        env=child_env(),
        check=False,
    )
    assert worker.returncode == 0, worker.stderr
    eventually(lambda: client.executions.get(exec_id).status.is_finished, what="the parent to end")
    assert all(c.status is ExecutionStatus.COMPLETED for c in store.children(exec_id))
    assert FlowHandle(exec_id).get() == 0 + 2
    assert sorted(c.id for c in store.children(exec_id)) == before  # no second children
    assert len(client.executions.list()) == 3
    assert client.executions.get(exec_id).run_count == 2


def test_a_parent_waiting_on_a_long_child_is_released_and_resumed(
    any_store: str,
    client: KitaruClient,
    monkeypatch: pytest.MonkeyPatch,
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    monkeypatch.setenv("KITARU_SLEEP_RELEASE_AFTER", "0.3")
    handle = _flows.parent.run(1, 1.5)
    parent = wait_until_released(client, handle.exec_id)
    assert parent.status_reason == "waiting_for_child"
    assert parent.pending_sleep is not None
    (child_id,) = parent.children
    assert parent.pending_sleep.child_exec_id == child_id
    wait_until_released(client, child_id)  # the child sleeps released too

    worker = spawn("-m", "kitaru.cli", "worker", "--poll-interval", "0.2")
    done = client.executions.wait(handle.exec_id, timeout=60)
    assert done.status is ExecutionStatus.COMPLETED
    assert handle.wait() == 0
    assert done.run_count == 2
    assert client.executions.get(child_id).status is ExecutionStatus.COMPLETED
    worker.send_signal(signal.SIGINT)
    worker.communicate(timeout=30)


def test_cancelling_a_parent_cancels_its_running_children(
    any_store: str, client: KitaruClient
) -> None:
    handle = _flows.parent.run(2, 60)
    store = get_backend().store
    eventually(lambda: len(store.children(handle.exec_id)) == 2, what="both children")
    client.executions.cancel(handle.exec_id)
    for child in store.children(handle.exec_id):
        assert child.status is ExecutionStatus.CANCELLED


def test_deleting_a_parent_with_children_needs_recursive(
    any_store: str, client: KitaruClient
) -> None:
    handle = _flows.parent.run(2)
    handle.wait()
    with pytest.raises(KitaruStateError, match="recursive"):
        client.executions.delete(handle.exec_id)
    refused = kitaru_cli("executions", "delete", handle.exec_id, "--yes")
    assert refused.returncode == 1
    assert "--recursive" in one_error_line(refused.stderr)
    assert len(client.executions.list()) == 3  # nothing deleted
    deleted = kitaru_cli("executions", "delete", handle.exec_id, "--yes", "--recursive")
    assert deleted.returncode == 0, deleted.stderr
    assert client.executions.list() == []


def test_a_child_started_just_before_a_crash_is_found_again_not_started_twice(
    client: KitaruClient,
) -> None:
    """The parent died after starting its child but before recording the call."""
    import uuid

    from kitaru._runtime.idempotency import child_exec_id

    parent_id = str(uuid.uuid4())
    orphan_child = child_exec_id(parent_id, "child")  # the id of the parent's call "child"
    _flows.child.submit_execution(
        (0,), {}, {}, None, uuid.UUID(orphan_child), parent_exec_id=parent_id
    ).wait()
    handle = _flows.parent.run(1, execution_id=uuid.UUID(parent_id))
    assert handle.wait() == 0
    assert client.executions.get(parent_id).children == [orphan_child]
    assert len(client.executions.list(flow="child")) == 1


def test_retrying_a_parent_retries_the_child_that_failed_it(
    any_store: str, client: KitaruClient, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.txt"
    handle = _flows.fragile_parent.run(str(marker))
    with pytest.raises(KitaruExecutionError):
        handle.wait(timeout=30)
    (child,) = client.executions.list(flow="fragile_child")
    assert child.status is ExecutionStatus.FAILED

    marker.write_text("fixed")  # the cause is fixed; the parent's failure says retry it
    client.executions.retry(handle.exec_id, wait=True)
    assert FlowHandle(handle.exec_id).wait(timeout=30) == "parent got fixed"
    again = client.executions.get(child.exec_id)
    assert again.status is ExecutionStatus.COMPLETED
    assert again.run_count == 2  # the same child, run again: no second child
    assert [e.exec_id for e in client.executions.list(flow="fragile_child")] == [child.exec_id]


def test_retrying_a_parent_runs_the_child_that_was_cancelled_under_it_again(
    any_store: str, client: KitaruClient, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.txt"
    handle = _flows.slow_parent.run(str(marker))
    child_id = eventually(lambda: [e.exec_id for e in client.executions.list(flow="slow_child")])[0]
    eventually(lambda: client.executions.get(child_id).status is ExecutionStatus.RUNNING)
    client.executions.cancel(child_id)
    with pytest.raises(KitaruExecutionError):
        handle.wait(timeout=30)
    assert client.executions.get(child_id).status is ExecutionStatus.CANCELLED

    marker.write_text("ready")
    client.executions.retry(handle.exec_id, wait=True)
    assert FlowHandle(handle.exec_id).wait(timeout=60) == "parent got ready"
    again = client.executions.get(child_id)
    assert again.status is ExecutionStatus.COMPLETED
    assert again.run_count == 2  # the same child, run again: no second child
    assert [e.exec_id for e in client.executions.list(flow="slow_child")] == [child_id]
    # Users still retry failed executions only.
    with pytest.raises(KitaruStateError, match="only failed executions"):
        client.executions.retry(child_id)
