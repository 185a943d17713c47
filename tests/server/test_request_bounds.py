"""Requests a server must refuse with a typed 4xx, never a 500: numbers past what the store
keeps, unknown schedules, stream positions, bodies that are not (the right) JSON."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kitaru.client import KitaruClient
from kitaru.errors import KitaruStateError
from tests.server import _flows
from tests.server.conftest import Server, serve

HUGE = 99999999999999999999  # past 64 bits


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert "Traceback" not in body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def test_numbers_past_the_stores_range_are_usage_errors(server: Server) -> None:
    done = _flows.adder.run(1)
    done.wait()
    with server.admin as api:  # one keep-alive connection throughout
        for after in (HUGE, 2**31, 2**63):
            refused = api.get(f"/executions/{done.exec_id}/logs", params={"after": after})
            assert refused.status_code == 422, (after, refused.text)
            error = _error(refused)
            assert error["type"] == "KitaruUsageError"
            assert "after" in error["message"]
            assert "2147483647" in error["message"]
            # The connection is still good (a 500 used to reset it).
            assert api.get(f"/executions/{done.exec_id}/logs").status_code == 200
        fine = api.get(f"/executions/{done.exec_id}/logs", params={"after": 2**31 - 1})
        assert fine.status_code == 200
        assert fine.json()["items"] == []


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("list_executions", {"keywords": {"limit": 2**63}}),
        ("list_executions", {"keywords": {"offset": HUGE}}),
        ("logs", {"positional": ["x"], "keywords": {"after_id": 2**63}}),
        ("events", {"positional": ["x"], "keywords": {"after": 2**63}}),
        ("orphaned", {"keywords": {"limit": 2**63}}),
        ("list_artifacts", {"keywords": {"limit": 2**63}}),
        ("children", {"positional": [2**63]}),
        ("get_schedule", {"positional": [2**63]}),
        ("cached_output", {"positional": [2**63], "keywords": {"exclude_exec_id": "x"}}),
        ("waits_of", {"positional": [[2**63]]}),
        ("suspensions_of", {"positional": [[2**63]]}),
    ],
)
def test_store_calls_with_numbers_past_64_bits_are_400s(
    server: Server, method: str, body: dict[str, Any]
) -> None:
    answer = server.client(server.runner_key).post(f"/store/{method}", json=body)
    assert answer.status_code == 400, answer.text
    error = _error(answer)
    assert error["type"] == "KitaruUsageError"
    assert f"store.{method}" in error["message"]
    assert str(2**63 - 1) in error["message"]
    named = {**body.get("keywords", {})}
    if method in ("list_executions", "logs", "orphaned", "list_artifacts", "events"):
        assert repr(next(iter(named))) in error["message"]


def test_store_calls_with_numbers_the_column_cannot_hold_are_400s(server: Server) -> None:
    # Within 64 bits, but past a 32-bit id column of PostgreSQL (fine on SQLite).
    answer = server.client(server.runner_key).post(
        "/store/logs", json={"positional": ["x"], "keywords": {"after_id": 2**31}}
    )
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert _error(answer)["type"] == "KitaruUsageError"


def test_stream_positions_past_the_stores_range_are_refused(server: Server) -> None:
    done = _flows.adder.run(1)
    done.wait()
    with server.admin as api:
        positions = [f"{HUGE}999", "1." + "9" * 23, str(2**31), "1" * 5000, "²"]
        # As an EventSource resends it (Last-Event-ID: ASCII only), and as since=.
        asked = [{"headers": {"Last-Event-ID": p}} for p in positions if p.isascii()]
        asked += [{"params": {"since": p}} for p in positions]
        for how in asked:
            refused = api.get(f"/executions/{done.exec_id}/stream", **how)
            assert refused.status_code == 400, (how, refused.text)
            assert _error(refused)["type"] == "KitaruUsageError"
        # A position within the range: the stream ends with its `end` event, as usual.
        with api.stream(
            "GET", f"/executions/{done.exec_id}/stream", headers={"Last-Event-ID": "2147483647.5"}
        ) as response:
            assert response.status_code == 200
            text = "".join(response.iter_text())
        assert "event: end" in text


def test_unknown_schedules_are_404s_with_the_stores_error(server: Server) -> None:
    api = server.admin
    for method, path in [
        ("GET", "/schedules/nope"),
        ("DELETE", "/schedules/nope"),
        ("POST", "/schedules/nope/pause"),
        ("POST", "/schedules/nope/resume"),
    ]:
        answer = api.request(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
        error = _error(answer)
        assert error["type"] == "KitaruStateError"  # what the local API raises
        assert "No schedule named 'nope'" in error["message"]
    remote = KitaruClient(server_url=server.url, auth_token=server.admin_key)
    with pytest.raises(KitaruStateError, match="No schedule named"):
        remote.schedules.get("nope")


def test_bodies_that_are_not_the_expected_json_say_so(server: Server) -> None:
    done = _flows.adder.run(1)
    done.wait()
    api = server.admin
    unknown_key = api.post("/analysis/statistics", json={"group_by": ["flow"], "gruop_by": []})
    assert unknown_key.status_code == 422, unknown_key.text
    assert "gruop_by" in _error(unknown_key)["message"]
    assert api.post("/analysis/statistics", json={"group_by": ["flow"]}).status_code == 200

    not_json = api.post(
        f"/executions/{done.exec_id}/input",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert not_json.status_code == 422
    assert "not valid JSON" in _error(not_json)["message"]
    as_form = api.post(f"/executions/{done.exec_id}/input", content=b"value=1")
    assert as_form.status_code == 422
    message = _error(as_form)["message"]
    assert "not sent as JSON" in message
    assert "application/json" in message


#: A server whose stack listing fails unexpectedly (an error no handler expects).
FAILING_SERVER_CLI = (
    "-c",
    "import kitaru._stacks.registry as registry\n"
    "def broken():\n"
    "    raise RuntimeError('unexpected')\n"
    "registry.list_stacks = broken\n"
    "from kitaru.cli._app import main\n"
    "main()",
)


@pytest.fixture
def failing_server(
    store_url: str, kitaru_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Server]:
    yield from serve(store_url, kitaru_home, monkeypatch, tmp_path, cli=FAILING_SERVER_CLI)


def _exchange(sock: socket.socket, path: str, key: str) -> bytes:
    """One HTTP/1.1 request on a kept-alive connection; the answer's bytes (b"": closed)."""
    sock.sendall(
        f"GET /api/v1{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            return answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_an_unexpected_error_is_a_typed_500_and_keeps_the_connection(
    failing_server: Server,
) -> None:
    host, port = failing_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        failed = _exchange(sock, "/stacks", failing_server.read_key)
        assert failed.startswith(b"HTTP/1.1 500"), failed
        body = json.loads(failed.partition(b"\r\n\r\n")[2])
        assert body["error"]["type"] == "KitaruError"
        assert "RuntimeError" in body["error"]["message"]
        # The same connection answers the next request (it used to be closed: reset).
        again = _exchange(sock, "/health", failing_server.read_key)
        assert again.startswith(b"HTTP/1.1 200"), again


def test_bodies_holding_nan_are_refused_alike_on_every_store(server: Server) -> None:
    # SQLite kept such a schedule and read its input back as null; PostgreSQL refused the
    # row with a message about NUL characters. Now both refuse it before anything happens.
    schedule = (
        b'{"name": "n", "flow_name": "adder", "flow_ref": {"module": "tests.server._flows", '
        b'"qualname": "adder"}, "cron": "0 3 * * *", "inputs": {"x": NaN}}'
    )
    runner = server.client(server.runner_key)
    for path, body in [
        ("/schedules", schedule),
        ("/replays", b'{"executions": ["x"], "at": "add", "flow_overrides": {"x": Infinity}}'),
        ("/store/list_executions", b'{"keywords": {"limit": -Infinity}}'),
    ]:
        refused = runner.post(path, content=body, headers={"Content-Type": "application/json"})
        assert refused.status_code == 422, (path, refused.text)
        error = _error(refused)
        assert error["type"] == "KitaruUsageError"
        assert "JSON has no such number" in error["message"]
    assert server.reader.get("/schedules").json() == []
    # In text, the words are only words.
    fine = runner.post(
        "/schedules",
        content=schedule.replace(b"NaN", b'"NaN and Infinity"'),
        headers={"Content-Type": "application/json"},
    )
    assert fine.status_code == 201, fine.text
