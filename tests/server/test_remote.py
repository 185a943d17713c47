"""The client and the CLI through a real server: same models, same errors, same JSON."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import kitaru
from kitaru._backend import forget_backends, get_backend
from kitaru.client import KitaruClient
from kitaru.client._remote_config import set_connection
from kitaru.errors import (
    KitaruBackendError,
    KitaruError,
    KitaruStateError,
    KitaruUsageError,
    KitaruWaitValidationError,
)
from tests.server import _flows
from tests.server.conftest import Server, free_port


@pytest.fixture(autouse=True)
def _disconnect() -> Iterator[None]:
    yield
    set_connection(None)


def _local() -> KitaruClient:
    client = KitaruClient()
    assert client.connection is None
    return client


def _wait_status(exec_id: str, status: str) -> None:
    from kitaru._backend import get_backend

    deadline = time.monotonic() + 30
    while str(get_backend().store.get_status(exec_id)) != status:
        assert time.monotonic() < deadline, f"{exec_id} never became {status}"
        time.sleep(0.05)


def _dump(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def test_client_through_server_matches_local(server: Server) -> None:
    done = _flows.adder.run(3)
    done.wait()
    failed = _flows.failing.run(4)
    with pytest.raises(KitaruError):
        failed.wait()
    local = _local()

    kitaru.connect(server.url, api_key=server.read_key)
    remote = KitaruClient()
    assert remote.connection is not None
    assert remote.connection.url == server.url

    assert (
        remote.executions.get(done.exec_id).to_dict()
        == local.executions.get(done.exec_id).to_dict()
    )
    assert remote.executions.get(done.exec_id[:8]).exec_id == done.exec_id
    assert [e.to_dict() for e in remote.executions.list()] == [
        e.to_dict() for e in local.executions.list()
    ]
    assert [e.exec_id for e in remote.executions.list(status="failed")] == [failed.exec_id]
    assert [e.exec_id for e in remote.executions.list(page=2, size=1)] == [done.exec_id]
    assert remote.executions.latest(flow="adder").exec_id == done.exec_id
    with pytest.raises(LookupError):
        remote.executions.latest(flow="nope")
    assert remote.executions.logs(done.exec_id) == local.executions.logs(done.exec_id)
    assert remote.executions.logs(done.exec_id, source=None, limit=1) == local.executions.logs(
        done.exec_id, source=None, limit=1
    )
    refs = remote.artifacts.list(done.exec_id)
    assert [r.to_dict() for r in refs] == [r.to_dict() for r in local.artifacts.list(done.exec_id)]
    output = next(r for r in refs if r.role == "output")
    assert remote.artifacts.get(output.artifact_id) == local.artifacts.get(output.artifact_id)
    assert output.load() == 4  # bytes downloaded, decoded here
    remote_output = remote.executions.get(done.exec_id).checkpoints[0].output
    assert remote_output is not None
    assert remote_output.load() == 4
    # The call's inputs: listed on the call, fetched and previewed by their ids.
    remote_inputs = remote.executions.get(done.exec_id).checkpoints[0].inputs
    assert [(r.name, r.direction, r.load()) for r in remote_inputs] == [
        ("a", "input", 3),
        ("b", "input", 1),
    ]
    remote_input = remote_inputs[0]
    assert remote.artifacts.get(remote_input.artifact_id).name == "a"
    preview = httpx.get(
        f"{server.url}/api/v1/artifacts/{remote_input.artifact_id}/preview",
        headers={"Authorization": f"Bearer {server.read_key}"},
    ).json()
    assert (preview["previewable"], preview["value"]) == (True, 3)
    # Events come from the server's SSE stream, as the store has them.
    assert [e.to_dict() for e in remote.executions.events(done.exec_id)] == [
        e.to_dict() for e in local.executions.events(done.exec_id)
    ]
    started = remote.executions.events(done.exec_id, kinds=["kitaru.checkpoint.started"])
    assert [e.kind for e in started] == ["kitaru.checkpoint.started"]
    first = next(iter(local.executions.events(done.exec_id)))
    later = remote.executions.events(done.exec_id, since=first.cursor, follow=False)
    assert [e.cursor for e in later] == [
        e.cursor for e in local.executions.events(done.exec_id, since=first.cursor)
    ]

    # Same error types as a local call; the server's store location is not told.
    with pytest.raises(KitaruBackendError, match="Failed to load execution") as unknown:
        remote.executions.get("00000000-0000-0000-0000-000000000000")
    assert "in the server's store" in str(unknown.value)
    assert "the the server's" not in str(unknown.value)
    assert "store the server's store" not in str(unknown.value)
    store = get_backend().store
    assert store.url not in str(unknown.value)
    assert repr(store) not in str(unknown.value)
    with pytest.raises(KitaruUsageError):
        remote.executions.list(limit=0)
    with pytest.raises(KitaruUsageError, match="source"):
        remote.executions.logs(done.exec_id, source="nope")
    # A read-only key: control is refused, the execution untouched.
    from kitaru.client._remote import KitaruPermissionError

    with pytest.raises(KitaruPermissionError):
        remote.executions.retry(failed.exec_id)
    assert local.executions.get(failed.exec_id).status.value == "failed"


def test_waits_answered_remotely(server: Server) -> None:
    kitaru.connect(server.url, api_key=server.admin_key)
    remote = KitaruClient()
    handle = _flows.approval.run(5)
    _wait_status(handle.exec_id, "waiting")
    [pending] = remote.executions.pending_waits(handle.exec_id)
    assert pending.name == "review"
    assert remote.executions.pending_waits() == [pending]
    with pytest.raises(KitaruWaitValidationError, match="approved"):
        remote.executions.input(handle.exec_id, wait="review", value={"approved": 3})
    assert remote.executions.get(handle.exec_id).status.value == "waiting"
    remote.executions.input(
        handle.exec_id, wait="review", value=_flows.Approval(approved=False, reviewer="bo")
    )
    assert handle.wait(timeout=30) == "6:False:bo"

    gated = _flows.gate.run(1)
    _wait_status(gated.exec_id, "waiting")
    remote.executions.abort_wait(gated.exec_id, wait="go")
    with pytest.raises(KitaruError):
        gated.wait(timeout=30)

    other = _flows.gate.run(2)
    _wait_status(other.exec_id, "waiting")
    assert remote.executions.cancel(other.exec_id).status.value == "cancelled"
    remote.executions.delete(other.exec_id)
    with pytest.raises(KitaruBackendError):
        remote.executions.get(other.exec_id)


def _completed() -> str:
    handle = _flows.adder.run(9)
    handle.wait()
    return handle.exec_id


def test_retry_remotely_then_a_worker_runs_it(server: Server) -> None:
    done = _completed()
    failed = _flows.failing.run(1)
    with pytest.raises(KitaruError):
        failed.wait()
    kitaru.connect(server.url, api_key=server.admin_key)
    remote = KitaruClient()
    with pytest.raises(KitaruStateError, match="only failed"):
        remote.executions.retry(done)
    retried = remote.executions.retry(failed.exec_id)
    assert retried.status.value == "running"
    set_connection(None)
    from kitaru.worker import run_worker

    assert run_worker(once=True) == 1
    with pytest.raises(KitaruError, match="boom"):
        failed.wait(timeout=30)


def test_environment_connection(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_SERVER_URL", server.url)
    with pytest.raises(KitaruUsageError, match="KITARU_AUTH_TOKEN"):
        KitaruClient()
    monkeypatch.setenv("KITARU_AUTH_TOKEN", "kt_wrong_key")
    from kitaru.client._remote import KitaruAuthenticationError

    with pytest.raises(KitaruAuthenticationError):
        KitaruClient().executions.list()
    monkeypatch.setenv("KITARU_AUTH_TOKEN", server.read_key)
    assert KitaruClient().executions.list() == []
    explicit = KitaruClient(server_url=server.url, auth_token=server.read_key)
    assert explicit.connection is not None
    assert explicit.connection.source == "KitaruClient(server_url=...)"
    assert explicit.executions.list() == []
    monkeypatch.delenv("KITARU_SERVER_URL")
    with pytest.raises(KitaruUsageError, match="KITARU_SERVER_URL"):
        KitaruClient()


def test_cli_login_logout_and_same_json(
    server: Server, cli: Any, kitaru_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = _flows.adder.run(2)
    done.wait()
    local_list = cli("executions", "list", "-o", "json").json()
    local_get = cli("executions", "get", done.exec_id, "-o", "json").json()
    local_logs = cli("executions", "logs", done.exec_id, "-o", "json").json()

    assert cli("login", server.url, "--api-key", "kt_bad_key").exit_code == 1
    login = cli("login", server.url, "--api-key", server.admin_key, "-o", "json")
    assert login.exit_code == 0, login.stderr
    credentials = kitaru_home / "credentials.json"
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
    status = cli("status", "-o", "json").json()["item"]
    assert status["connection"] == {"url": server.url, "source": "kitaru login", "problem": None}
    assert server.admin_key not in json.dumps(status)
    info = cli("info", "-o", "json").json()["item"]["connection"]
    assert info == {"type": "server", "url": server.url, "source": "kitaru login", "problem": None}

    # Every read goes through the server now (the local store is not touched): same JSON.
    assert KitaruClient().connection is not None
    assert cli("executions", "list", "-o", "json").json() == local_list
    got = cli("executions", "get", done.exec_id, "-o", "json")
    assert got.exit_code == 0, got.stderr
    assert got.json() == local_get
    assert cli("executions", "logs", done.exec_id, "-o", "json").json() == local_logs
    missing = cli("executions", "get", "00000000-0000-0000-0000-000000000000", "-o", "json")
    assert missing.exit_code == 1
    assert missing.stdout == ""
    assert json.loads(missing.stderr)["error"]["type"] == "KitaruBackendError"

    gated = _flows.gate.run(4)
    _wait_status(gated.exec_id, "waiting")
    answered = cli("executions", "input", gated.exec_id, "--wait", "go", "-o", "json")
    assert answered.exit_code == 0, answered.stderr
    assert gated.wait(timeout=30) == 6

    logout = cli("logout", "-o", "json")
    assert logout.json()["item"] == {"logged_out": True}
    assert not credentials.exists()
    assert cli("status", "-o", "json").json()["item"]["connection"] is None


def test_login_takes_0_21s_connection_options(
    server: Server, cli: Any, kitaru_home: Path, tmp_path: Path
) -> None:
    """--timeout, --no-verify-ssl and --ssl-ca-cert are kept with the login and used by
    every later process; --refresh is accepted; --project is not supported."""
    login = cli(
        "login", server.url, "--api-key", server.admin_key, "--timeout", "7.5",
        "--no-verify-ssl", "--refresh", "-o", "json",
    )  # fmt: skip
    assert login.exit_code == 0, login.stderr
    saved = json.loads((kitaru_home / "credentials.json").read_text())
    assert (saved["verify"], saved["timeout"]) == (False, 7.5)
    connection = KitaruClient().connection
    assert connection is not None
    assert (connection.verify, connection.timeout) == (False, 7.5)
    assert cli("executions", "list", "-o", "json").exit_code == 0

    import certifi

    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    again = cli("login", server.url, "--api-key", server.admin_key, "--ssl-ca-cert", str(bundle))
    assert again.exit_code == 0, again.stderr
    connection = KitaruClient().connection
    assert connection is not None
    assert (connection.verify, connection.timeout) == (str(bundle.resolve()), 30.0)

    for args, error_type, words in [
        (["--project", "p"], "KitaruFeatureNotAvailableError", "--project"),
        (["--ssl-ca-cert", str(tmp_path / "nope.pem")], "KitaruUsageError", "no such file"),
        (["--no-verify-ssl", "--ssl-ca-cert", str(bundle)], "KitaruUsageError", "not both"),
        (["--ssl-ca-cert", str(kitaru_home / "credentials.json")], "KitaruUsageError", "PEM"),
        (["--timeout", "0"], "KitaruUsageError", "--timeout"),
    ]:
        refused = cli("login", server.url, "--api-key", server.admin_key, *args, "-o", "json")
        assert refused.exit_code == 1, args
        assert refused.stdout == ""
        error = json.loads(refused.stderr)["error"]
        assert error["type"] == error_type
        assert words in error["message"]
    # The login in place is left as it was.
    assert json.loads((kitaru_home / "credentials.json").read_text())["verify"] == str(
        bundle.resolve()
    )
    assert cli("logout").exit_code == 0


def test_login_without_url_starts_a_local_server(
    cli: Any, kitaru_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = _flows.adder.run(1)
    done.wait()
    port = free_port()
    started = cli("login", "--port", str(port), "-o", "json")
    assert started.exit_code == 0, started.stderr
    item = started.json()["item"]
    try:
        assert item["url"] == f"http://127.0.0.1:{port}"
        assert (kitaru_home / "server" / "server.pid").exists()
        status = cli("server", "status", "-o", "json").json()["item"]
        assert status["running"] is True
        assert status["healthy"] is True
        remote = KitaruClient()
        assert remote.connection is not None
        assert [e.exec_id for e in remote.executions.list()] == [done.exec_id]
        # Flows run here record into the store that server serves, without HTTP.
        forget_backends()
        assert get_backend().store.url.startswith("sqlite")
        second = _flows.adder.run(2)
        assert second.wait() == 3
        listed = {e.exec_id for e in KitaruClient().executions.list()}
        assert listed == {done.exec_id, second.exec_id}
        # Logging in again reuses the running server.
        again = cli("login", "--port", str(port), "-o", "json").json()["item"]
        assert again["pid"] == item["pid"]
    finally:
        stopped = cli("server", "stop", "-o", "json").json()["item"]
    assert stopped["stopped"] is True
    assert cli("server", "status", "-o", "json").json()["item"]["running"] is False
    cli("logout")


def test_replay_through_the_server(server: Server) -> None:
    source = _flows.adder.run(3)
    assert source.wait() == 4
    kitaru.connect(server.url, api_key=server.admin_key)
    remote = KitaruClient()
    with pytest.raises(KitaruStateError, match="nope"):
        remote.executions.replay(source.exec_id, at="nope", wait=False)
    submission = remote.executions.replay(
        source.exec_id, at="add", checkpoint_overrides={"add": {"output": 41}}, wait=False
    )
    [row] = submission.results
    assert row.original_exec_id == source.exec_id
    assert submission.plan.matched_targets
    # The dashboard's comparison of the two, on this server (0.21: a UI compare link).
    link = f"{server.url}/#/compare/{source.exec_id}/{row.replay_exec_id}"
    assert row.compare_url == submission.compare_url == link
    assert kitaru.compare_url_for_executions([source.exec_id, row.replay_exec_id]) == link
    assert kitaru.diff(source.exec_id, row.replay_exec_id, client=remote).urls == [link]
    replayed = remote.executions.get(row.replay_exec_id)
    assert replayed.original_exec_id == source.exec_id
    set_connection(None)
    from kitaru.handle import FlowHandle
    from kitaru.worker import run_worker

    assert run_worker(once=True) == 1  # the server ran nothing: a worker does
    assert FlowHandle(row.replay_exec_id).wait(timeout=30) == 41


def test_flow_handle_through_the_server(server: Server) -> None:
    done = _flows.adder.run(10)
    failed = _flows.failing.run(2)
    done.wait()
    with pytest.raises(KitaruError):
        failed.wait()
    kitaru.connect(server.url, api_key=server.read_key)
    from kitaru import FlowHandle
    from kitaru.errors import KitaruUserCodeError

    handle = FlowHandle(done.exec_id)
    assert handle.status.value == "completed"
    assert handle.wait(timeout=10) == 11
    assert handle.get() == 11
    with pytest.raises(KitaruUserCodeError, match="boom 2") as info:
        FlowHandle(failed.exec_id).wait()
    assert info.value.exec_id == failed.exec_id
    with pytest.raises(KitaruBackendError):
        FlowHandle("00000000-0000-0000-0000-000000000000").status  # noqa: B018


def test_statistics_and_cohort_through_the_server_match_the_store(server: Server, cli: Any) -> None:
    for x in (1, 2, 3):
        _flows.adder.run(x).wait()
    with pytest.raises(KitaruError):
        _flows.failing.run(5).wait()
    local = KitaruClient()
    kwargs: dict[str, Any] = {
        "group_by": ["flow", "status"],
        "metrics": ["steps:step_count:sum", "took:duration:max"],
    }
    expected = local.executions.statistics(**kwargs).to_dict()
    expected_cohort = local.executions.cohort(flow="adder", at="add", limit=2).resolve()
    expected_cli = cli("executions", "statistics", "--group-by", "flow", "-o", "json").json()

    kitaru.connect(server.url, api_key=server.read_key)
    try:
        remote = KitaruClient()
        assert remote.connection is not None
        assert remote.executions.statistics(**kwargs).to_dict() == expected
        got = remote.executions.cohort(flow="adder", at="add", limit=2).resolve()
        assert got == expected_cohort
        assert len(got) == 2
        # Same errors as on the store, raised before any request.
        with pytest.raises(KitaruUsageError, match="group_by"):
            remote.executions.statistics(group_by=["nonsense"])
        with pytest.raises(KitaruUsageError, match="limit"):
            remote.executions.cohort(flow="adder", at="add", limit=0)
        assert cli("executions", "statistics", "--group-by", "flow", "-o", "json").json() == (
            expected_cli
        )
        cohort_cli = cli("executions", "cohort", "--flow", "adder", "--at", "add", "-o", "json")
        assert (
            cohort_cli.json()["item"]["exec_ids"]
            == local.executions.cohort(flow="adder", at="add").resolve().exec_ids
        )
    finally:
        set_connection(None)


def test_a_server_with_a_small_page_cap_still_lists_everything(
    store_url: str, kitaru_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The client learns the server's --max-page-size and pages within it."""
    from kitaru.server._accounts import create_account, create_key
    from tests.server.conftest import start_server, stop

    monkeypatch.setenv("KITARU_STORE_URL", store_url)
    forget_backends()
    done = [_flows.adder.run(i) for i in range(7)]
    for handle in done:
        handle.wait(timeout=30)
    create_account(get_backend().store, "ci")
    _key, raw = create_key(get_backend().store, "ci", "reader", "read")
    log = tmp_path / "capped.log"
    url, process = start_server(kitaru_home, store_url, log, "--max-page-size", "3")
    try:
        version = httpx.get(f"{url}/api/v1/version", headers={"Authorization": f"Bearer {raw}"})
        assert version.json()["max_page_size"] == 3
        remote = KitaruClient(server_url=url, auth_token=raw)
        listed = remote.executions.list()
        assert sorted(e.exec_id for e in listed) == sorted(h.exec_id for h in done)
        assert len(remote.executions.list(limit=5)) == 5
        assert len(remote.executions.list(page=2, size=4)) == 3
        logs = remote.executions.logs(done[0].exec_id)
        assert logs
    finally:
        stop(process)


def test_login_to_a_url_that_is_not_a_kitaru_server_is_a_backend_error(
    cli: Any, kitaru_home: Path
) -> None:
    """A service answering JSON of another shape: one typed error, nothing saved."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Other(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"unexpected": true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{other.server_address[1]}"
    try:
        result = cli("login", url, "--api-key", "kt_whatever", "-o", "json")
        assert result.exit_code == 1
        assert result.stdout == ""
        error = json.loads(result.stderr)["error"]
        assert error["type"] == "KitaruBackendError"
        assert "not as a Kitaru server does" in error["message"]
        assert not (kitaru_home / "credentials.json").exists()
        with pytest.raises(KitaruBackendError, match="Check the URL"):
            kitaru.connect(url, api_key="kt_whatever")
    finally:
        other.shutdown()


def test_waiting_on_a_handed_over_execution_says_it_needs_a_worker(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``retry(wait=True)`` through a server with no worker up: the wait says what it
    waits for (once), instead of blocking without a word."""
    from kitaru.client import _remote_client
    from kitaru.errors import KitaruTimeoutError

    handle = _flows.failing.run(5)
    with pytest.raises(Exception, match="boom"):
        handle.wait(timeout=30)
    monkeypatch.setattr(_remote_client, "NO_WORKER_HINT_AFTER", 0.2)
    remote = KitaruClient(server_url=server.url, auth_token=server.admin_key)
    remote.executions.retry(handle.exec_id)
    with caplog.at_level("WARNING", logger="kitaru"), pytest.raises(KitaruTimeoutError):
        remote.executions.wait(handle.exec_id, timeout=1.0)
    hints = [r.getMessage() for r in caplog.records if "kitaru worker" in r.getMessage()]
    assert len(hints) == 1, hints
    assert handle.exec_id in hints[0]


@pytest.mark.parametrize("bad_id", ["", " ", ".", "..", "a/b", "../../etc/passwd"])
def test_ids_no_store_holds_are_unknown_through_a_server_as_locally(
    server: Server, bad_id: str
) -> None:
    # As a URL path segment such an id would be rewritten ("..") and reach another route
    # (all pending waits, a bare 404): it is unknown, with the store's own error.
    waiting = _flows.gate.run(11)
    _wait_status(waiting.exec_id, "waiting")
    local = _local()
    kitaru.connect(server.url, api_key=server.admin_key)
    remote = KitaruClient()
    for call in ("get", "pending_waits", "cancel", "logs"):
        with pytest.raises(KitaruBackendError, match="Failed to load execution") as found:
            getattr(remote.executions, call)(bad_id)
        with pytest.raises(KitaruBackendError) as expected:
            getattr(local.executions, call)(bad_id)
        assert type(found.value) is type(expected.value)
    with pytest.raises(KitaruBackendError, match="Failed to load artifact"):
        remote.artifacts.get(bad_id)
    assert [w.exec_id for w in remote.executions.pending_waits(None)] == [waiting.exec_id]
    remote.executions.cancel(waiting.exec_id)


def test_cli_retry_through_a_server_returns_or_says_what_it_waits_for(
    server: Server, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --no-wait returns at once (a worker of the server runs it, not this process); a
    # waiting retry says once that no worker has taken it, then ends with the run.
    import threading

    from kitaru.client import _remote_client
    from kitaru.worker import run_worker

    first, second = _flows.failing.run(6), _flows.failing.run(7)
    for handle in (first, second):
        with pytest.raises(Exception, match="boom"):
            handle.wait(timeout=30)
    monkeypatch.setattr(_remote_client, "NO_WORKER_HINT_AFTER", 0.3)
    kitaru.connect(server.url, api_key=server.admin_key)

    started = time.monotonic()
    quick = cli("executions", "retry", first.exec_id, "--no-wait", "-o", "json")
    assert quick.exit_code == 0, quick.stderr
    assert time.monotonic() - started < 10  # returned, no worker needed
    assert quick.json()["item"]["exec_id"] == first.exec_id

    # A worker comes up after a while (on the server's store, as a user would run one).
    later = threading.Timer(2.0, lambda: run_worker(once=True, schedules=False))
    later.start()
    try:
        waited = cli("executions", "retry", second.exec_id)
    finally:
        later.join(timeout=60)
    assert waited.exit_code == 1  # the retry ran and failed again
    assert waited.stderr.count("none has taken it yet") == 1, waited.stderr
    assert KitaruClient().executions.get(second.exec_id).status.value == "failed"


def test_a_worker_through_a_server_outlives_a_server_outage(
    server: Server, kitaru_home: Path, tmp_path: Path
) -> None:
    # The server goes away and comes back (a restart, a deploy): `kitaru worker` waits
    # for it instead of exiting, then runs what is handed to it.
    import subprocess
    import sys
    from urllib.parse import urlsplit

    from kitaru.handle import FlowHandle
    from tests.server.conftest import process_env, start_server, stop

    source = _flows.adder.run(3)
    assert source.wait() == 4
    env = process_env(
        kitaru_home,
        KITARU_SERVER_URL=server.url,
        KITARU_AUTH_TOKEN=server.runner_key,
    )
    worker_log = tmp_path / "worker.log"
    with open(worker_log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "kitaru.cli", "worker", "--poll-interval", "0.2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    restarted = None
    try:
        time.sleep(1.0)  # polling the server
        stop(server.process)
        time.sleep(1.5)  # a few polls against no server
        assert worker.poll() is None, worker_log.read_text()
        port = urlsplit(server.url).port
        _, restarted = start_server(kitaru_home, server.store_url, server.log, port=port)
        remote = KitaruClient(server_url=server.url, auth_token=server.admin_key)
        submission = remote.executions.replay(
            source.exec_id, at="add", checkpoint_overrides={"add": {"output": 41}}, wait=False
        )
        [row] = submission.results
        assert FlowHandle(row.replay_exec_id).wait(timeout=60) == 41, worker_log.read_text()
    finally:
        stop(worker)
        if restarted is not None:
            stop(restarted)
    said = worker_log.read_text()
    assert said.count("unreachable") == 1, said  # once for the outage, not every poll
    assert "answers again" in said
    assert "Traceback" not in said
