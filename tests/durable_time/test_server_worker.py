"""``kitaru server start --worker`` / ``kitaru login``: the server's own worker process.

A real background server (``kitaru login`` with no URL) on a free port: a
released sleep completes with only that server running, its worker child is
restarted when killed, and ``kitaru server stop`` leaves no worker behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import pytest

from kitaru._backend import get_backend
from kitaru._store import ExecutionStatus
from kitaru.client import KitaruClient
from tests.durable_time import _flows
from tests.server.conftest import free_port
from tests.waits.conftest import eventually, kitaru_cli, wait_until_released


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _workers(server_pid: int) -> list[int]:
    result = []
    for pid in _children(server_pid):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"kitaru.server._worker" in cmdline:
                result.append(pid)
    return result


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads child processes from /proc")
def test_login_server_runs_a_worker_that_wakes_sleeps_and_stops_with_it(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_SLEEP_RELEASE_AFTER", "0.2")
    port = free_port()
    login = kitaru_cli("login", "--port", str(port), "-o", "json")
    assert login.returncode == 0, login.stderr
    server_pid = 0
    try:
        server_pid = int(json.loads(login.stdout)["item"]["pid"])
        (first,) = eventually(lambda: _workers(server_pid), what="the server's worker")

        # No worker but the server's: the released sleep still wakes up and completes.
        handle = _flows.napper.run(1.5)
        client = KitaruClient()
        wait_until_released(client, handle.exec_id)
        done = client.executions.wait(handle.exec_id, timeout=60)
        assert done.status is ExecutionStatus.COMPLETED
        record = get_backend().store.get_execution(handle.exec_id)
        assert record is not None
        assert record.status is ExecutionStatus.COMPLETED

        # A worker that dies is started again.
        os.kill(first, signal.SIGKILL)
        (second,) = eventually(
            lambda: [p for p in _workers(server_pid) if p != first],
            what="a restarted worker",
        )
        assert second != first
    finally:
        stopped = kitaru_cli("server", "stop", "-o", "json")
        kitaru_cli("logout")
    assert stopped.returncode == 0, stopped.stderr
    assert _gone(server_pid)
    eventually(lambda: _gone(second), what="the worker to stop with the server")
