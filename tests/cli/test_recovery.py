"""Crash recovery from the CLI: orphaned executions, ``executions resume`` and ``worker``."""

from __future__ import annotations

import time

import pytest

from kitaru.client import KitaruClient
from tests.cli.conftest import Flows, Invoke

LEASE = "0.5"


def crash(flows: Flows) -> str:
    """Run ``crashy`` in a process that SIGKILLs itself inside a checkpoint; its exec id."""
    proc = flows.run_in_subprocess("crashy", 1)
    assert proc.returncode == -9, proc.stderr
    # The runner thread may kill the process before its main thread prints the id.
    printed = proc.stdout.split()
    exec_id = printed[0] if printed else KitaruClient().executions.latest(flow="crashy").exec_id
    deadline = time.monotonic() + 10
    while not KitaruClient().executions.get(exec_id).is_orphaned:
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.05)
    return exec_id


@pytest.fixture(autouse=True)
def short_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_LEASE_SECONDS", LEASE)


def test_orphaned_execution_is_marked_and_resumed(
    cli: Invoke, kitaru_proc: Invoke, flows: Flows
) -> None:
    exec_id = crash(flows)

    listed = cli("executions", "list")
    line = next(line for line in listed.stdout.splitlines() if exec_id in line)
    assert "running (orphaned)" in line
    item = cli("executions", "list", "-o", "json").json()["items"][0]
    assert item["is_orphaned"] is True
    shown = cli("executions", "get", exec_id)
    assert "orphaned" in shown.stdout
    assert f"kitaru executions resume {exec_id}" in shown.stdout

    result = kitaru_proc("executions", "resume", exec_id, "-o", "json")
    assert result.exit_code == 0, result.stderr + result.stdout
    document = result.json()
    assert document["command"] == "executions.resume"
    item = document["item"]
    assert item["status"] == "completed"
    assert item["is_orphaned"] is False
    assert [c["call_id"] for c in item["checkpoints"]] == ["crash_once", "steady"]

    again = cli("executions", "resume", exec_id)
    assert again.exit_code == 1
    assert again.stderr.startswith("Error: ")
    assert "completed" in again.stderr


def test_a_runner_of_this_machine_that_died_is_orphaned_at_once_in_list_and_get(
    cli: Invoke, flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_LEASE_SECONDS", "120")  # not waited out: the pid is gone
    proc = flows.run_in_subprocess("crashy", 1)
    assert proc.returncode == -9, proc.stderr
    exec_id = KitaruClient().executions.latest(flow="crashy").exec_id
    assert KitaruClient().executions.get(exec_id).is_orphaned
    item = cli("executions", "list", "-o", "json").json()["items"][0]
    assert (item["exec_id"], item["status"], item["is_orphaned"]) == (exec_id, "running", True)
    assert cli("executions", "get", exec_id, "-o", "json").json()["item"]["is_orphaned"] is True
    listed = cli("executions", "list").stdout.splitlines()
    assert "running (orphaned)" in next(line for line in listed if exec_id in line)


def test_worker_once_resumes_orphans(kitaru_proc: Invoke, flows: Flows) -> None:
    exec_id = crash(flows)
    result = kitaru_proc("worker", "--once", "--poll-interval", "0.1", "-o", "json")
    assert result.exit_code == 0, result.stderr
    document = result.json()
    assert document["command"] == "worker"
    assert document["item"]["resumed"] == 1
    assert exec_id in result.stderr  # the worker's log line names what it resumed
    assert KitaruClient().executions.get(exec_id).status.value == "completed"


def test_worker_with_nothing_to_do(cli: Invoke) -> None:
    result = cli("worker", "--once")
    assert result.exit_code == 0, result.stderr
    assert "resumed 0 execution(s)" in result.stdout


def test_worker_rejects_bad_interval(cli: Invoke) -> None:
    result = cli("worker", "--poll-interval", "0")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")


def test_worker_stops_cleanly_on_ctrl_c() -> None:
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "kitaru.cli", "worker", "--poll-interval", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # printed once the worker is about to poll
        assert "Kitaru worker" in banner
        assert "Ctrl-C" in banner
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopping the worker" in stderr
    assert "Traceback" not in stderr
    assert "Worker stopped; it resumed 0 execution(s)." in stdout
