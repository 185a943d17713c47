"""A process connected to a server (no store URL of its own) records through it.

Connected = ``KITARU_SERVER_URL`` + ``KITARU_AUTH_TOKEN`` (or ``kitaru login``):
the runner has no database and no artifact root; its executions, logs and
artifact bytes all go through the server's API, and a worker connected the same
way resumes what a killed runner left.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from kitaru._backend import get_backend
from kitaru.client import KitaruClient
from kitaru.errors import KitaruBackendError
from tests.server.conftest import (
    REPO_ROOT,
    RUN_FLOW,
    Server,
    process_env,
    start_server,
    stop,
)

BIG = 100_000  # above the 64 KiB inline limit: the value is a blob

RUN = RUN_FLOW.format(flow="big_crashy", args="{n}, {marker!r}")


def _connected_env(server: Server, key: str, home: Path) -> dict[str, str]:
    return process_env(
        home, KITARU_SERVER_URL=server.url, KITARU_AUTH_TOKEN=key, KITARU_LEASE_SECONDS="2"
    )


def _kill_runner_in_slow(env: dict[str, str], n: int, marker: Path) -> str:
    """Run ``big_crashy`` in a connected child; SIGKILL it once it is inside ``slow``."""
    runner = subprocess.Popen(
        [sys.executable, "-c", RUN.format(n=n, marker=str(marker))],
        env={**env, "KITARU_TEST_SLOW": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert runner.stdout is not None
        line = runner.stdout.readline()
        assert line.startswith("EXEC"), runner.stderr.read() if runner.stderr else line
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert runner.poll() is None, runner.stderr.read() if runner.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    return line.split()[1]


def test_a_connected_runner_killed_mid_flow_is_resumed_through_the_server(
    server: Server, tmp_path: Path
) -> None:
    home = tmp_path / "runner-home"
    env = _connected_env(server, server.runner_key, home)
    # Killed after `bulky` completed, inside `slow`.
    exec_id = _kill_runner_in_slow(env, BIG, tmp_path / "started")

    # The runner kept nothing of its own: no database, no artifact directory.
    assert not (home / "kitaru.db").exists()
    assert not (home / "artifacts").exists()
    # The server holds the execution and the blob, under the server's artifact root.
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status.value == "running"
    bulky = next(c for c in execution.checkpoints if c.name == "bulky")
    output = bulky.output
    assert output is not None
    record = get_backend().store.get_artifact(output.artifact_id)
    assert record is not None
    assert record.inline_data is None
    assert record.uri is not None
    assert record.uri.startswith(get_backend().artifacts_root.rstrip("/"))

    worker = subprocess.run(
        [sys.executable, "-m", "kitaru.cli", "worker", "--once", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert json.loads(worker.stdout)["item"]["resumed"] == 1
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status.value == "completed", execution.failure
    # `bulky` was not run again: its blob was downloaded through the server on resume.
    assert [c.name for c in execution.checkpoints] == ["bulky", "slow"]
    assert execution.checkpoints[0].attempts[0].run == 1
    from kitaru import FlowHandle

    assert FlowHandle(exec_id).get() == BIG + BIG * 10
    assert KitaruClient().artifacts.get(output.artifact_id).load() == "x" * BIG
    assert not (home / "kitaru.db").exists()


def test_a_connected_process_with_a_non_runner_key_is_told_what_key_it_needs(
    server: Server, tmp_path: Path
) -> None:
    env = _connected_env(server, server.admin_key, tmp_path / "home")
    result = subprocess.run(
        [sys.executable, "-c", RUN.format(n=10, marker=str(tmp_path / "m"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert result.returncode != 0
    assert "KitaruPermissionError" in result.stderr
    assert "--runner" in result.stderr
    assert KitaruClient().executions.list() == []  # nothing recorded


def test_blob_uploads_are_checked(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = server.client(server.runner_key)
    data = os.urandom(1000)
    sha = hashlib.sha256(data).hexdigest()
    stored = runner.put("/store/blobs", content=data, headers={"X-Kitaru-Sha256": sha})
    assert stored.status_code == 200, stored.text
    uri = stored.json()["uri"]
    assert stored.json()["sha256"] == sha
    back = runner.get("/store/blobs", params={"uri": uri, "sha256": sha})
    assert back.status_code == 200
    assert back.content == data

    # Damaged in transit: refused, nothing stored.
    bad = runner.put("/store/blobs", content=data, headers={"X-Kitaru-Sha256": "0" * 64})
    assert bad.status_code == 400
    assert "X-Kitaru-Sha256" in bad.json()["error"]["message"]
    # Only runner keys move bytes; a URI outside the server's root is never read.
    assert server.admin.put("/store/blobs", content=data).status_code == 403
    assert server.reader.get("/store/blobs", params={"uri": uri, "sha256": sha}).status_code == 403
    # A URI outside the root is a refused request (403), not an unavailable store (503:
    # "try again"); its type is a local read's, KitaruBackendError.
    shard_dir = uri.removeprefix("file://").rsplit("/", 2)[0]
    zeros = "0" * 64
    for outside_uri in ("/etc/passwd", f"file://{shard_dir}/../kitaru.db"):
        outside = runner.get("/store/blobs", params={"uri": outside_uri, "sha256": zeros})
        assert outside.status_code == 403, outside.text
        assert b"root:" not in outside.content
        error = outside.json()["error"]
        assert error["type"] == "KitaruBackendError"
        assert "not a blob of the artifact store" in error["message"]
    # The remote client raises it as such: a backend failure, which no retry repeats.
    from kitaru.client._remote_blobs import ServerBlobs

    monkeypatch.setenv("KITARU_AUTH_TOKEN", server.runner_key)
    blobs = ServerBlobs(f"kitaru+{server.url}")
    try:
        with pytest.raises(KitaruBackendError, match="not a blob of the artifact store") as info:
            blobs.get("/etc/passwd", zeros)
        assert getattr(info.value, "http_status", None) == 403
        assert blobs.get(uri, sha) == data
    finally:
        blobs.close()


def test_blob_cap_and_request_deadline(server: Server, tmp_path: Path) -> None:
    """A small blob cap gives 413; a request trickling its body gets 504, not a hang."""
    home = tmp_path / "second"
    url, process = start_server(
        Path(os.environ["KITARU_CONFIG_PATH"]),
        server.store_url,
        home.with_suffix(".log"),
        KITARU_SERVER_MAX_BLOB_BYTES="2000",
        KITARU_SERVER_REQUEST_TIMEOUT="1",
    )
    try:
        import httpx

        headers = {"Authorization": f"Bearer {server.runner_key}"}
        big = httpx.put(f"{url}/api/v1/store/blobs", content=b"x" * 3000, headers=headers)
        assert big.status_code == 413
        assert "KITARU_SERVER_MAX_BLOB_BYTES" in big.json()["error"]["message"]
        # The blob route's cap is its own; other routes keep the 1 MiB body cap.
        small = httpx.put(f"{url}/api/v1/store/blobs", content=b"x" * 1500, headers=headers)
        assert small.status_code == 200

        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
            conn.sendall(
                b"POST /api/v1/store/get_execution HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {server.runner_key}\r\n".encode()
                + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            answer = b""  # the body never completes: only the deadline answers
            while b"}}" not in answer:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 504"), answer[:200]
        assert b"KITARU_SERVER_REQUEST_TIMEOUT" in answer
    finally:
        stop(process)


def test_resume_through_a_server_takes_over_at_once_from_a_runner_killed_here(
    server: Server, tmp_path: Path
) -> None:
    """Locally, resume takes over at once from a runner of this machine that is gone; the
    server cannot check a pid here, so the client tells it. It used to wait the lease out."""
    home = tmp_path / "runner-home"
    env = {**_connected_env(server, server.runner_key, home), "KITARU_LEASE_SECONDS": "600"}
    exec_id = _kill_runner_in_slow(env, 10, tmp_path / "started")
    held = KitaruClient().executions.get(exec_id)
    assert held.lease_expires_at is not None
    assert held.lease_expires_at.timestamp() > time.time() + 300  # its lease still holds

    resumed = subprocess.run(
        [sys.executable, "-m", "kitaru.cli", "executions", "resume", exec_id, "--no-wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert resumed.returncode == 0, resumed.stderr
    worker = subprocess.run(
        [sys.executable, "-m", "kitaru.cli", "worker", "--once", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    final = KitaruClient().executions.get(exec_id)
    assert final.status.value == "completed", final.failure


def test_a_connected_runner_rides_out_a_server_restart(
    server: Server, kitaru_home: Path, tmp_path: Path
) -> None:
    """The server stops (SIGTERM) and starts again on the same port mid-flow: the runner
    waits for it and finishes the execution itself; every step ran once."""
    home = tmp_path / "runner-home"
    env = process_env(
        home,
        KITARU_SERVER_URL=server.url,
        KITARU_AUTH_TOKEN=server.runner_key,
        KITARU_LEASE_SECONDS="20",
    )
    log = tmp_path / "steps.log"
    runner = subprocess.Popen(
        [sys.executable, "-c", RUN_FLOW.format(flow="paced_flow", args=f"8, {str(log)!r}")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while not log.exists() or len(log.read_text().split()) < 2:
            assert runner.poll() is None, runner.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stop(server.process)  # a graceful stop, as for an upgrade
        time.sleep(1.5)
        port = urlsplit(server.url).port
        _url, server.process = start_server(kitaru_home, server.store_url, server.log, port=port)
        out, err = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 0, err[-3000:]
    assert "RESULT 28" in out, out + err[-3000:]
    assert err.count("is unreachable") == 1, err  # said once, while it waited
    assert "answers again" in err
    assert sorted(int(i) for i in log.read_text().split()) == list(range(8))
    exec_id = next(line.split()[1] for line in out.splitlines() if line.startswith("EXEC"))
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status.value == "completed"
    assert execution.run_count == 1
