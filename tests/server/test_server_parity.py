"""Where a server used to differ from the store: replay run counts, artifact pages, a
huge log line, uvicorn workers outliving the server, a worker's schedule messages."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kitaru._backend import forget_backends, get_backend
from kitaru.client import KitaruClient
from kitaru.server._accounts import create_account, create_key
from tests.server import _flows
from tests.server.conftest import (
    REPO_ROOT,
    RUN_FLOW,
    Server,
    free_port,
    process_env,
    start_server,
    stop,
)


def test_a_replay_through_the_server_is_one_run_as_locally(server: Server) -> None:
    from kitaru.worker import run_worker

    source = _flows.adder.run(3)
    assert source.wait() == 4
    local = KitaruClient().executions.replay(source.exec_id, at="add", wait=True)
    remote = KitaruClient(server_url=server.url, auth_token=server.admin_key)
    submission = remote.executions.replay(source.exec_id, at="add", wait=False)
    [row] = submission.results
    handed = KitaruClient().executions.get(row.replay_exec_id)
    assert handed.run_count == 0  # handed over, not run yet
    assert run_worker(once=True, schedules=False) == 1
    replayed = KitaruClient().executions.wait(row.replay_exec_id, timeout=30)
    assert replayed.status.value == "completed"
    [here] = local.results
    expected = KitaruClient().executions.get(here.replay_exec_id)
    assert replayed.run_count == expected.run_count == 1
    runs = [
        a.run for c in replayed.checkpoints for a in c.attempts if c.call_status.value != "reused"
    ]
    assert runs
    assert set(runs) == {1}


def test_artifact_lists_page_through_a_server_with_a_small_page_cap(
    store_url: str, kitaru_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KITARU_STORE_URL", store_url)
    forget_backends()
    from tests.server import _hardening_flows as flows

    handle = flows.steps.run(4)
    assert handle.wait(timeout=30) == 6
    create_account(get_backend().store, "ci")
    _key, raw = create_key(get_backend().store, "ci", "reader", "read")
    url, process = start_server(
        kitaru_home, store_url, tmp_path / "capped.log", "--max-page-size", "2"
    )
    try:
        local = KitaruClient()
        remote = KitaruClient(server_url=url, auth_token=raw)
        everything = [r.to_dict() for r in local.artifacts.list(handle.exec_id)]
        assert len(everything) > 4  # more than two pages of two
        assert [r.to_dict() for r in remote.artifacts.list(handle.exec_id)] == everything
        for limit in (1, 3, 5, 501):
            assert [r.to_dict() for r in remote.artifacts.list(handle.exec_id, limit=limit)] == [
                r.to_dict() for r in local.artifacts.list(handle.exec_id, limit=limit)
            ]
        outputs = [r.to_dict() for r in local.artifacts.list(handle.exec_id, role="output")]
        assert [r.to_dict() for r in remote.artifacts.list(handle.exec_id, role="output")] == (
            outputs
        )
        # The type filter is the server's too, before the limit (as locally).
        typed = [r.to_dict() for r in local.artifacts.list(handle.exec_id, type="output", limit=3)]
        assert [
            r.to_dict() for r in remote.artifacts.list(handle.exec_id, type="output", limit=3)
        ] == typed
    finally:
        stop(process)


def test_a_log_line_larger_than_the_body_limit_is_kept_whole(
    server: Server, tmp_path: Path
) -> None:
    n = 800_000  # 1.6 MB of UTF-8 in one print: over the server's 1 MiB body limit
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_FLOW.replace("_flows", "_hardening_flows").format(flow="loud", args=n),
        ],
        env=process_env(
            tmp_path / "runner-home",
            KITARU_STORE_URL=f"kitaru+{server.url}",
            KITARU_AUTH_TOKEN=server.runner_key,
        ),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "could not store" not in result.stderr, result.stderr[-3000:]
    exec_id = re.search(r"EXEC ([0-9a-f-]{36})", result.stdout)
    assert exec_id is not None, result.stdout[-2000:]
    lines = KitaruClient().executions.logs(exec_id[1], limit=10_000)
    assert len(lines) > 1  # in consecutive parts, in order
    assert "".join(line.message for line in lines) == "é" * n


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_uvicorn_workers_die_with_a_killed_server(
    kitaru_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    kitaru_home.mkdir(parents=True, exist_ok=True)
    store_url = f"sqlite:///{kitaru_home / 'store.db'}"
    port = free_port()
    url, process = start_server(
        kitaru_home, store_url, tmp_path / "server.log", "--workers", "2", "--worker", port=port
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len([p for p in _children(process.pid) if _uvicorn_worker(p)]) < 2:
            assert time.monotonic() < deadline, _children(process.pid)
            time.sleep(0.1)
        children = _children(process.pid)  # the two uvicorn processes, the worker...
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in children):
            assert time.monotonic() < deadline, [p for p in children if _alive(p)]
            time.sleep(0.1)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/api/v1/health", timeout=2)
    finally:
        stop(process)
        for pid in children:  # what outlived its server (without the fix): ours to end
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _uvicorn_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"spawn_main" in cmdline.read()
    except OSError:
        return False


def test_a_worker_says_once_that_it_cannot_fire_schedules(
    kitaru_home: Path, tmp_path: Path
) -> None:
    # No server answers yet: "Could not fire schedules" once, not at every poll; once
    # more when it works again.
    store_url = f"sqlite:///{kitaru_home / 'store.db'}"
    kitaru_home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    from kitaru._store import Store

    direct = Store(store_url)
    create_account(direct, "ci")
    _key, runner_key = create_key(direct, "ci", "runner", "runner")
    direct.dispose()
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "kitaru.cli", "worker", "--poll-interval", "0.1"],
            env=process_env(
                tmp_path / "worker-home", KITARU_SERVER_URL=url, KITARU_AUTH_TOKEN=runner_key
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = None
    try:
        time.sleep(2.0)  # ~20 polls against nothing
        assert worker.poll() is None, log.read_text()
        _url, server = start_server(kitaru_home, store_url, tmp_path / "server.log", port=port)
        deadline = time.monotonic() + 30
        while "Schedules fire again" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        stop(worker)
        if server is not None:
            stop(server)
    said = log.read_text()
    assert said.count("Could not fire schedules") == 1, said
    assert said.count("Schedules fire again") == 1, said
