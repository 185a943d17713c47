"""Runners recording through the server (``KITARU_STORE_URL=kitaru+http://...``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kitaru._store import _wire
from kitaru.client import KitaruClient
from tests.server.conftest import REPO_ROOT, RUN_FLOW, Server, process_env, serve


def _env(url: str, key: str, home: Path) -> dict[str, str]:
    return process_env(home, KITARU_STORE_URL=f"kitaru+{url}", KITARU_AUTH_TOKEN=key)


def _run_flow(url: str, key: str, home: Path, flow: str, args: object) -> Any:
    """``_flows.<flow>(args)`` run in a process that records through the server at ``url``."""
    return subprocess.run(
        [sys.executable, "-c", RUN_FLOW.format(flow=flow, args=args)],
        env=_env(url, key, home),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


def test_a_flow_records_through_the_server(server: Server, tmp_path: Path) -> None:
    result = _run_flow(server.url, server.runner_key, tmp_path / "runner-home", "adder", 4)
    assert result.returncode == 0, result.stderr[-3000:]
    # The step prints while the main thread prints the id: the two may share a line.
    exec_id = re.search(r"EXEC ([0-9a-f-]{36})", result.stdout)
    assert exec_id is not None, result.stdout
    assert re.search(r"^RESULT 5$", result.stdout, re.M), result.stdout
    # The runner had no access to the store: everything it recorded went through the server.
    execution = KitaruClient().executions.get(exec_id[1])
    assert execution.status.value == "completed"
    assert [c.name for c in execution.checkpoints] == ["add"]
    assert KitaruClient().executions.logs(exec_id[1])[0].message == "adding 4 and 1"


CRASH = """
from tests.server import _flows
handle = _flows.crashy.run(3, {marker!r})
print("EXEC " + handle.exec_id + "\\n", end="", flush=True)  # one write: steps print meanwhile
handle.wait()
"""


#: The ``kitaru`` command of a server from before ``Store.recorded_calls`` existed.
OLD_SERVER_CLI = (
    "-c",
    "from kitaru._store import _wire; "
    "_wire.METHODS = _wire.METHODS - {'recorded_calls'}; "
    "from kitaru.cli._app import main; main()",
)


@pytest.fixture(params=["server", "older server"])
def any_server(
    request: pytest.FixtureRequest,
    store_url: str,
    kitaru_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Server]:
    """This version's server, and one too old to answer ``recorded_calls`` (a resumed
    run then reads the full call records: ``HttpStore.recorded_calls``)."""
    cli = OLD_SERVER_CLI if request.param == "older server" else ("-m", "kitaru.cli")
    yield from serve(store_url, kitaru_home, monkeypatch, tmp_path, cli=cli)


def test_a_runner_killed_mid_checkpoint_is_resumed_by_a_worker_of_the_server(
    any_server: Server, tmp_path: Path
) -> None:
    server = any_server
    marker = tmp_path / "started"
    env = _env(server.url, server.runner_key, tmp_path / "runner-home")
    runner = subprocess.Popen(
        [sys.executable, "-c", CRASH.format(marker=str(marker))],
        env={**env, "KITARU_TEST_SLOW": "1", "KITARU_LEASE_SECONDS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert runner.stdout is not None
        exec_id = runner.stdout.readline().split()[1]
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
    assert KitaruClient().executions.get(exec_id).status.value == "running"
    worker = subprocess.run(
        [sys.executable, "-m", "kitaru.cli", "worker", "--once", "-o", "json"],
        env={**env, "KITARU_LEASE_SECONDS": "2"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert json.loads(worker.stdout)["item"]["resumed"] == 1
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status.value == "completed"
    assert execution.run_count == 2
    assert [c.name for c in execution.checkpoints] == ["slow", "add"]
    from kitaru import FlowHandle

    assert FlowHandle(exec_id).get() == 31


def test_only_runner_keys_may_record(server: Server) -> None:
    body = {"positional": ["00000000-0000-0000-0000-000000000000"], "keywords": {}}
    for key in (server.read_key, server.admin_key):
        refused = server.client(key).post("/store/get_execution", json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["type"] == "KitaruPermissionError"
    runner = server.client(server.runner_key)
    assert runner.post("/store/get_execution", json=body).json() == {"result": None}
    unknown = runner.post("/store/read", json=body)
    assert unknown.status_code == 404
    # Only the listed record types decode: anything else is refused, never built.
    forged = {"positional": [{"$k": "record", "t": "Popen", "v": {}}], "keywords": {}}
    assert runner.post("/store/get_execution", json=forged).status_code in (400, 422)


def _nested(depth: int) -> list[Any]:
    """A list inside a list... ``depth`` deep: valid JSON that a recursive decoder chokes on."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("get_status", {"positional": [{"a": 1}], "keywords": {}}),
        ("get_execution", {"positional": [{"a": 1}], "keywords": {}}),
        ("list_executions", {"positional": [], "keywords": {"limit": "abc"}}),
        ("get_status", {"positional": [], "keywords": {"nope": 1}}),
        ("get_execution", {"positional": [_nested(700)], "keywords": {}}),
    ],
)
def test_store_calls_with_wrongly_typed_arguments_are_400s(
    server: Server, method: str, body: dict[str, Any]
) -> None:
    answer = server.client(server.runner_key).post(f"/store/{method}", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "KitaruUsageError"
    assert f"store.{method}" in error["message"]
    assert "Traceback" not in error["message"]


def test_a_write_the_server_refuses_as_too_large_fails_the_run_as_the_stores_failure(
    server: Server, tmp_path: Path
) -> None:
    """A 413 on a runner's store call is the store failing under it (origin backend: no
    retry spent, resumable), not an error in the flow."""
    from tests.server.conftest import start_server, stop

    url, process = start_server(
        Path(os.environ["KITARU_CONFIG_PATH"]),
        server.store_url,
        tmp_path / "capped.log",
        KITARU_SERVER_MAX_BODY_BYTES="6000",
    )
    try:
        result = _run_flow(url, server.runner_key, tmp_path / "runner-home", "textflow", 20_000)
    finally:
        stop(process)
    assert result.returncode != 0
    exec_id = re.search(r"EXEC ([0-9a-f-]{36})", result.stdout)
    assert exec_id is not None, result.stdout + result.stderr[-2000:]
    execution = KitaruClient().executions.get(exec_id[1])
    assert execution.status.value == "failed"
    assert execution.failure is not None
    assert execution.failure.origin.value == "backend", execution.failure
    assert "refused to store" in execution.failure.message


def test_a_chatty_checkpoint_keeps_every_line_through_a_server_with_a_small_body_limit(
    server: Server, tmp_path: Path
) -> None:
    # ~240 KB of lines flushed at once, a server taking 32 KB bodies: sent in parts
    # under its limit (it says it in /version), none of them refused and dropped.
    from tests.server.conftest import start_server, stop

    url, process = start_server(
        Path(os.environ["KITARU_CONFIG_PATH"]),
        server.store_url,
        tmp_path / "capped.log",
        KITARU_SERVER_MAX_BODY_BYTES=str(32 * 1024),
    )
    try:
        result = _run_flow(url, server.runner_key, tmp_path / "runner-home", "chatty_flow", 2000)
    finally:
        stop(process)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "could not store" not in result.stderr
    exec_id = re.search(r"EXEC ([0-9a-f-]{36})", result.stdout)
    assert exec_id is not None, result.stdout[-2000:]
    lines = [e.message for e in KitaruClient().executions.logs(exec_id[1], limit=10_000)]
    assert lines == [f"line {i:05d} " + "z" * 100 for i in range(2000)]


#: The ``kitaru`` command of a server that speaks another store protocol (a newer one).
OTHER_PROTOCOL_SERVER_CLI = (
    "-c",
    "from kitaru._store import _wire; _wire.PROTOCOL = 99; "
    "from kitaru.cli._app import main; main()",
)


@pytest.fixture
def other_protocol_server(
    store_url: str, kitaru_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Server]:
    yield from serve(store_url, kitaru_home, monkeypatch, tmp_path, cli=OTHER_PROTOCOL_SERVER_CLI)


def test_a_runner_refuses_a_server_of_another_store_protocol_before_writing(
    other_protocol_server: Server, tmp_path: Path
) -> None:
    """Version skew between a runner and its server is one clear error up front, not a
    failure on the first request the server cannot decode."""
    server = other_protocol_server
    result = _run_flow(server.url, server.runner_key, tmp_path / "runner-home", "adder", 4)
    assert result.returncode != 0
    assert "KitaruBackendError" in result.stderr
    assert "speaks store protocol 99" in result.stderr
    assert f"speaks protocol {_wire.PROTOCOL}" in result.stderr
    assert "same Kitaru version" in result.stderr
    assert KitaruClient().executions.list() == []  # nothing was written


def test_the_server_refuses_a_store_call_stating_another_protocol(server: Server) -> None:
    version = server.reader.get("/version").json()
    assert version["protocol"] == _wire.PROTOCOL
    other_protocol = str(_wire.PROTOCOL + 1)
    body = {"positional": ["nope"], "keywords": {}}
    with server.client(server.runner_key) as runner:
        other = runner.post(
            "/store/get_execution",
            json=body,
            headers={"X-Kitaru-Store-Protocol": other_protocol},
        )
        assert other.status_code == 409, other.text
        assert other.json()["error"]["type"] == "KitaruBackendError"
        assert f"states protocol '{other_protocol}'" in other.json()["error"]["message"]
        assert f"speaks store protocol {_wire.PROTOCOL}" in other.json()["error"]["message"]
        # Refused before the body is read: a body of another form is not what is wrong.
        reshaped = runner.post(
            "/store/get_execution",
            json={"positional": "not a list"},
            headers={"X-Kitaru-Store-Protocol": other_protocol},
        )
        assert reshaped.status_code == 409, reshaped.text
        empty = runner.post(
            "/store/get_execution", json=body, headers={"X-Kitaru-Store-Protocol": ""}
        )
        assert empty.status_code == 200, empty.text  # states none: served
        same = runner.post(
            "/store/get_execution",
            json=body,
            headers={"X-Kitaru-Store-Protocol": str(_wire.PROTOCOL)},
        )
        unstated = runner.post("/store/get_execution", json=body)  # a client before the check
    assert same.status_code == unstated.status_code == 200, (same.text, unstated.text)
    assert same.json() == unstated.json() == {"result": None}


REPLAY_THROUGH_SERVER = """
import json
from tests.server import _flows
from kitaru.errors import KitaruFeatureNotAvailableError
handle = _flows.adder.run(4)
assert handle.wait(timeout=60) == 5
try:
    _flows.adder.replay(handle.exec_id, at="add", cache=True, wait=False)
except KitaruFeatureNotAvailableError as exc:
    refused = str(exc)
submission = _flows.adder.replay(handle.exec_id, at="add", x=10, wait=False)
(row,) = submission.results
print(json.dumps({"source": handle.exec_id, "replay": row.replay_exec_id, "refused": refused}))
"""


def test_a_flow_replays_through_the_server_and_a_worker_runs_it(
    server: Server, tmp_path: Path
) -> None:
    """``my_flow.replay(...)`` in a process that records through a server: the server
    plans it, a worker runs it (it crashed with an AttributeError before)."""
    result = subprocess.run(
        [sys.executable, "-c", REPLAY_THROUGH_SERVER],
        env=_env(server.url, server.runner_key, tmp_path / "runner-home"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ids = json.loads(result.stdout.strip().splitlines()[-1])
    assert "cannot change cache" in ids["refused"]
    from kitaru.worker import run_worker

    assert run_worker(once=True) == 1
    replayed = KitaruClient().executions.wait(ids["replay"], timeout=60)
    assert replayed.status.value == "completed"
    assert replayed.original_exec_id == ids["source"]
    from kitaru.handle import FlowHandle

    assert FlowHandle(ids["replay"]).wait(timeout=60) == 11
