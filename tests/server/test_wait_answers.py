"""Answers to waits through a real server: what JSON cannot carry, sizes, dates, pending
waits, and who continues an answered execution. Each on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from kitaru._backend import get_backend
from kitaru.client import KitaruClient
from kitaru.client._remote_config import set_connection
from kitaru.errors import KitaruTimeoutError, KitaruWaitValidationError
from tests.server import _flows
from tests.server import _hardening_flows as flows
from tests.server.conftest import Server

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def _disconnect() -> Iterator[None]:
    yield
    set_connection(None)


def _wait_status(exec_id: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while str(get_backend().store.get_status(exec_id)) != status:
        assert time.monotonic() < deadline, f"{exec_id} never became {status}"
        time.sleep(0.05)


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert "Traceback" not in body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def _post_raw(server: Server, exec_id: str, body: bytes) -> httpx.Response:
    """A body as a client other than ours may write it (NaN, escapes: what httpx won't)."""
    return server.admin.post(
        f"/executions/{exec_id}/input",
        content=body,
        headers={"Content-Type": "application/json"},
    )


def _still_waiting(exec_id: str, wait: str) -> None:
    assert get_backend().store.get_status(exec_id).value == "waiting"  # type: ignore[union-attr]
    [pending] = KitaruClient().executions.pending_waits(exec_id)
    assert pending.name == wait


def _remote(server: Server) -> KitaruClient:
    return KitaruClient(server_url=server.url, auth_token=server.admin_key)


def test_non_finite_numbers_are_refused_and_the_execution_keeps_waiting(server: Server) -> None:
    handle = flows.measured.run(1)
    _wait_status(handle.exec_id, "waiting")
    for raw in (b"NaN", b"Infinity", b"-Infinity", b'"NaN"', b'"inf"', b"[1, NaN]"):
        body = b'{"wait": "f", "value": ' + raw + b"}"
        refused = _post_raw(server, handle.exec_id, body)
        assert refused.status_code == 422, (raw, refused.text)
        error = _error(refused)
        assert error["type"] == "KitaruWaitValidationError", (raw, error)
        if raw != b"[1, NaN]":  # a list for a float: refused by the schema, as before
            assert "JSON cannot carry" in error["message"], error
            assert error["details"][0]["keyword"] == "finite"
        _still_waiting(handle.exec_id, "f")

    # The remote client refuses it before sending anything.
    remote = _remote(server)

    def no_request(*args: object, **kwargs: object) -> None:
        raise AssertionError("sent to the server")

    session = remote.executions._session  # type: ignore[attr-defined]
    original = session.post
    session.post = no_request
    try:
        for number in (float("inf"), float("-inf"), float("nan")):
            with pytest.raises(KitaruWaitValidationError, match="JSON cannot carry") as raised:
                remote.executions.input(handle.exec_id, wait="f", value=number)
            assert raised.value.details[0]["keyword"] == "finite"
        with pytest.raises(KitaruWaitValidationError, match="x/1"):
            remote.executions.input(handle.exec_id, wait="f", value={"x": [1.0, float("nan")]})
    finally:
        session.post = original
    _still_waiting(handle.exec_id, "f")

    # What got a 200 runs: the flow gets the number it was given.
    remote.executions.input(handle.exec_id, wait="f", value=2.5)
    assert handle.wait(timeout=30) == 2.5


def test_an_answer_the_store_takes_is_taken_through_a_default_server(server: Server) -> None:
    # The wait limit is 1 MiB of JSON; the body limit was 1 MiB too, so the largest
    # answers (plus {"wait": ..., "value": ...}) were refused for the body, not the answer.
    near = "x" * (MIB - 100)
    local_one, remote_one = flows.texted.run(1), flows.texted.run(2)
    for handle in (local_one, remote_one):
        _wait_status(handle.exec_id, "waiting")
    KitaruClient().executions.input(local_one.exec_id, wait="s", value=near)
    _remote(server).executions.input(remote_one.exec_id, wait="s", value=near)
    assert local_one.wait(timeout=30) == remote_one.wait(timeout=30) == len(near)

    # Escaped by another client (\u00e9 for é: 6 bytes for 2), it still fits.
    escaped = flows.texted.run(3)
    _wait_status(escaped.exec_id, "waiting")
    text = "é" * 500_000  # 1,000,000 bytes as stored, 3,000,000 as escaped JSON
    body = json.dumps({"wait": "s", "value": text}).encode()
    assert b"\\u00e9" in body
    accepted = _post_raw(server, escaped.exec_id, body)
    assert accepted.status_code == 200, accepted.text
    assert escaped.wait(timeout=30) == len(text)


def test_an_answer_over_the_wait_limit_is_the_same_error_everywhere(server: Server) -> None:
    handle = flows.texted.run(1)
    _wait_status(handle.exec_id, "waiting")
    over = "x" * (MIB + 10)
    with pytest.raises(KitaruWaitValidationError, match="too large"):
        KitaruClient().executions.input(handle.exec_id, wait="s", value=over)
    remote = _remote(server)
    with pytest.raises(KitaruWaitValidationError, match="too large"):
        remote.executions.input(handle.exec_id, wait="s", value=over)
    # Far over it: refused before sending (the server says how much it takes).
    huge = "x" * (8 * MIB)
    session = remote.executions._session  # type: ignore[attr-defined]
    original = session.post
    session.post = lambda *a, **k: pytest.fail("sent to the server")
    try:
        with pytest.raises(KitaruWaitValidationError, match="too large for the server"):
            remote.executions.input(handle.exec_id, wait="s", value=huge)
    finally:
        session.post = original
    # ... and a client that sends it anyway gets a 413: a body-size error, refused before
    # the execution is looked at (so it claims nothing about the execution's state).
    refused = _post_raw(server, handle.exec_id, json.dumps({"wait": "s", "value": huge}).encode())
    assert refused.status_code == 413
    error = _error(refused)
    assert error["type"] == "KitaruUsageError"
    assert "larger than this server accepts" in error["message"]
    assert "nothing was recorded" in error["message"]
    assert "waiting" not in error["message"]
    _still_waiting(handle.exec_id, "s")
    KitaruClient().executions.cancel(handle.exec_id)


def test_values_json_cannot_say_are_judged_by_the_waits_type_as_locally(server: Server) -> None:
    when = datetime(2020, 1, 1)
    remote = _remote(server)
    # A datetime for a str wait: refused here (it would have arrived as its text).
    text_wait = flows.texted.run(1)
    _wait_status(text_wait.exec_id, "waiting")
    with pytest.raises(KitaruWaitValidationError):
        KitaruClient().executions.input(text_wait.exec_id, wait="s", value=when)
    with pytest.raises(KitaruWaitValidationError, match="valid string") as raised:
        remote.executions.input(text_wait.exec_id, wait="s", value=when)
    assert raised.value.details
    _still_waiting(text_wait.exec_id, "s")
    KitaruClient().executions.cancel(text_wait.exec_id)

    # A datetime for a datetime wait: taken, as locally.
    local_dated, remote_dated = flows.dated.run(1), flows.dated.run(2)
    for handle in (local_dated, remote_dated):
        _wait_status(handle.exec_id, "waiting")
    KitaruClient().executions.input(local_dated.exec_id, wait="when", value=when)
    remote.executions.input(remote_dated.exec_id, wait="when", value=when)
    assert local_dated.wait(timeout=30) == remote_dated.wait(timeout=30) == when.isoformat()

    # Text the type cannot read as a date: refused by the server (the JSON schema checks
    # no format), instead of a 200 and a run that fails on it.
    unreadable = flows.dated.run(3)
    _wait_status(unreadable.exec_id, "waiting")
    refused = server.admin.post(
        f"/executions/{unreadable.exec_id}/input", json={"wait": "when", "value": "yesterday"}
    )
    assert refused.status_code == 422, refused.text
    assert _error(refused)["type"] == "KitaruWaitValidationError"
    _still_waiting(unreadable.exec_id, "when")
    ok = server.admin.post(
        f"/executions/{unreadable.exec_id}/input", json={"wait": "when", "value": "2021-02-03"}
    )
    assert ok.status_code == 200, ok.text
    assert unreadable.wait(timeout=30) == "2021-02-03T00:00:00"


def test_waits_of_cancelled_executions_are_not_pending_anywhere(server: Server) -> None:
    waiting, cancelled = _flows.gate.run(1), _flows.gate.run(2)
    for handle in (waiting, cancelled):
        _wait_status(handle.exec_id, "waiting")
    KitaruClient().executions.cancel(cancelled.exec_id)
    _wait_status(cancelled.exec_id, "cancelled")

    listed = server.reader.get("/waits").json()
    assert [(w["exec_id"], w["execution_status"]) for w in listed["items"]] == [
        (waiting.exec_id, "waiting")
    ]
    local = [w.exec_id for w in KitaruClient().executions.pending_waits()]
    remote = [w.exec_id for w in _remote(server).executions.pending_waits()]
    assert local == remote == [waiting.exec_id]
    KitaruClient().executions.cancel(waiting.exec_id)


def test_an_answer_no_runner_holds_is_handed_to_a_worker(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from kitaru.client import _remote_client
    from kitaru.client._prompt import recorded_answer
    from kitaru.worker import run_worker

    handle = flows.reviewed.run(1)
    _wait_status(handle.exec_id, "waiting")
    deadline = time.monotonic() + 30
    while get_backend().store.require_execution(handle.exec_id).lease_owner is not None:
        assert time.monotonic() < deadline, "the runner never let go"
        time.sleep(0.05)
    remote = _remote(server)
    answered = remote.executions.input(handle.exec_id, wait="review", value={"score": "7"})
    # Handed to the workers, like a remote retry or resume: clients can tell it waits for
    # one (and say so); the hand-over is not a run.
    assert _remote_client.handed_off(answered), answered
    assert answered.status.value == "running"
    assert answered.run_count == 1
    # The answer as recorded (coerced by the wait's type), as `executions input` echoes it.
    assert recorded_answer(handle.exec_id, "review", backend=remote._backend) == {
        "score": 7,
        "comment": "ok",
    }
    monkeypatch.setattr(_remote_client, "NO_WORKER_HINT_AFTER", 0.2)
    with caplog.at_level("WARNING", logger="kitaru"), pytest.raises(KitaruTimeoutError):
        remote.executions.wait(handle.exec_id, timeout=1.0)
    assert any("none has taken it yet" in r.getMessage() for r in caplog.records)

    assert run_worker(once=True, schedules=False) == 1
    final = KitaruClient().executions.wait(handle.exec_id, timeout=30)
    assert final.status.value == "completed"
    assert final.run_count == 2  # the first run, and the worker's
    from kitaru.handle import FlowHandle

    assert FlowHandle(handle.exec_id).get() == "7:ok"


def test_an_answer_a_runner_still_holds_is_left_to_it(server: Server) -> None:
    handle = flows.measured.run(1)
    _wait_status(handle.exec_id, "waiting")
    answered = _remote(server).executions.input(handle.exec_id, wait="f", value=1)
    assert answered.lease_owner != "kitaru-server:handoff"
    assert handle.wait(timeout=30) == 1.0
    assert KitaruClient().executions.get(handle.exec_id).run_count == 1
