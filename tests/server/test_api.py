"""The REST API against a real server process, over SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kitaru._backend import get_backend
from kitaru.client import KitaruClient
from kitaru.errors import KitaruWaitValidationError
from tests.server import _flows
from tests.server.conftest import Server


def _error(response: object) -> dict[str, str]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert "Traceback" not in body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def _wait_status(exec_id: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while KitaruClient().executions.get(exec_id).status.value != status:
        assert time.monotonic() < deadline, f"{exec_id} never became {status}"
        time.sleep(0.05)


def test_read_executions_logs_artifacts(server: Server) -> None:
    done = _flows.adder.run(3)
    assert done.wait() == 4
    failed = _flows.failing.run(5)
    with pytest.raises(Exception, match="boom 5"):
        failed.wait()
    api = server.admin

    page = api.get("/executions").json()
    assert page["count"] == 2
    assert [i["exec_id"] for i in page["items"]] == [failed.exec_id, done.exec_id]
    assert page["next_cursor"] is None

    one = api.get("/executions", params={"status": "failed"}).json()
    assert [i["exec_id"] for i in one["items"]] == [failed.exec_id]
    assert api.get("/executions", params={"flow": "adder"}).json()["count"] == 1
    assert api.get("/executions", params={"stack": "local"}).json()["count"] == 2
    assert api.get("/executions", params={"stack": "ray"}).json()["count"] == 0
    future = (datetime.now(tz=UTC) + timedelta(hours=1)).isoformat()
    assert api.get("/executions", params={"created_after": future}).json()["count"] == 0
    assert api.get("/executions", params={"created_before": future}).json()["count"] == 2

    # Cursor pagination: pages of one, in order, no repeats.
    first = api.get("/executions", params={"limit": 1}).json()
    second = api.get("/executions", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [first["items"][0]["exec_id"], second["items"][0]["exec_id"]] == [
        failed.exec_id,
        done.exec_id,
    ]
    assert second["next_cursor"] is None

    # The same JSON as the client's models (what `kitaru executions get -o json` prints).
    detail = api.get(f"/executions/{done.exec_id}").json()
    local = KitaruClient().executions.get(done.exec_id).to_dict()
    assert detail == {
        **json.loads(json.dumps(local)),
        "lease_owner": None,
        "lease_expires_at": None,
    }
    assert detail["checkpoints"][0]["name"] == "add"
    assert detail["checkpoints"][0]["attempts"]
    # A unique prefix works as in the CLI.
    assert api.get(f"/executions/{done.exec_id[:8]}").json()["exec_id"] == done.exec_id

    logs = api.get(f"/executions/{done.exec_id}/logs").json()
    assert [line["message"] for line in logs["items"]] == ["adding 3 and 1"]
    after = api.get(f"/executions/{done.exec_id}/logs", params={"after": logs["next_after"]})
    assert after.json()["items"] == []

    artifacts = api.get(f"/executions/{done.exec_id}/artifacts").json()["items"]
    output = next(a for a in artifacts if a["role"] == "output")
    assert api.get(f"/artifacts/{output['artifact_id']}").json()["name"] == output["name"]
    preview = api.get(f"/artifacts/{output['artifact_id']}/preview").json()
    assert preview["previewable"] is True
    assert preview["value"] == 4
    data = api.get(f"/artifacts/{output['artifact_id']}/data")
    assert data.content == b"4"
    assert data.headers["x-kitaru-serializer"] == "json"
    inputs = next(a for a in artifacts if a["role"] == "flow_inputs")
    assert api.get(f"/artifacts/{inputs['artifact_id']}/preview").json()["previewable"] is False

    stacks = api.get("/stacks").json()
    assert "local" in [s["name"] for s in stacks["items"]]
    assert api.get("/version").json()["api"] == "v1"


def test_errors_are_typed_json(server: Server) -> None:
    api = server.admin
    missing = api.get("/executions/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert _error(missing)["type"] == "KitaruBackendError"
    bad_status = api.get("/executions", params={"status": "sleeping"})
    assert bad_status.status_code == 400
    assert _error(bad_status)["type"] == "KitaruUsageError"
    bad_cursor = api.get("/executions", params={"cursor": "not-a-cursor"})
    assert bad_cursor.status_code == 400
    assert "cursor" in _error(bad_cursor)["message"]
    naive = api.get("/executions", params={"created_after": "2026-01-01T00:00:00"})
    assert naive.status_code == 400
    done = _flows.adder.run(1)
    done.wait()
    retry = api.post(f"/executions/{done.exec_id}/retry")
    assert retry.status_code == 409
    assert _error(retry)["type"] == "KitaruStateError"
    no_wait = api.post(f"/executions/{done.exec_id}/input", json={"value": 1})
    assert no_wait.status_code == 409
    unknown_field = api.post(f"/executions/{done.exec_id}/input", json={"nope": 1})
    assert unknown_field.status_code == 422
    assert _error(unknown_field)["type"] == "KitaruUsageError"
    assert api.get("/no-such-route").status_code == 404
    # Text no store can hold (NUL: PostgreSQL refuses it) is a client error, never a 500.
    for path in ("/executions/ab%00cd", "/executions/ab%00cd/logs", "/artifacts/%00"):
        refused = api.get(path)
        assert refused.status_code in (400, 404), (path, refused.text)
        assert _error(refused)["type"] in ("KitaruUsageError", "KitaruBackendError")
    assert api.get("/executions", params={"flow": "a\x00b"}).json()["count"] == 0
    replay = api.post("/replays", json={"executions": ["ab\u0000cd"], "at": "add"})
    assert replay.status_code in (400, 404), replay.text


def test_limits(server: Server) -> None:
    api = server.admin
    too_many = api.get("/executions", params={"limit": 501})
    assert too_many.status_code == 400
    assert "500" in _error(too_many)["message"]
    huge = api.post(
        "/replays",
        content=b'{"at": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert _error(huge)["type"] == "KitaruUsageError"
    # An answer to a wait may be larger (room for the largest the wait limit allows);
    # over that, a body-size error that says nothing of the execution (here there is
    # none: it cannot be "still waiting", see test_wait_answers).
    huge_answer = api.post(
        "/executions/x/input",
        content=b'{"value": "' + b"x" * (5 * 1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert huge_answer.status_code == 413
    answer_error = _error(huge_answer)
    assert answer_error["type"] == "KitaruUsageError"
    assert "larger than this server accepts" in answer_error["message"]
    assert "waiting" not in answer_error["message"]
    # Refusals made before a route runs have the compact JSON of every other error body.
    not_found = api.get("/executions/nope")
    assert not_found.content.startswith(b'{"error":{"type":')
    for refusal in (huge, huge_answer):
        assert refusal.content.startswith(b'{"error":{"type":'), refusal.content[:40]
        assert (
            refusal.content
            == json.dumps(refusal.json(), ensure_ascii=False, separators=(",", ":")).encode()
        )
    # No CORS unless configured: no Access-Control-* headers for a browser origin.
    cors = api.get("/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in cors.headers


def test_wait_answered_with_valid_and_invalid_input(server: Server) -> None:
    handle = _flows.approval.run(2)
    _wait_status(handle.exec_id, "waiting")
    api = server.admin
    waits = api.get(f"/executions/{handle.exec_id}/waits").json()
    assert [w["name"] for w in waits["items"]] == ["review"]
    assert waits["items"][0]["schema"]["properties"]["approved"]["type"] == "boolean"

    bad = api.post(
        f"/executions/{handle.exec_id}/input",
        json={"wait": "review", "value": {"approved": "maybe"}},
    )
    assert bad.status_code == 422
    error = _error(bad)
    assert error["type"] == "KitaruWaitValidationError"
    assert "approved" in error["message"]
    # One structured entry per problem, each with the path of the field it is about
    # (a missing property: the property itself, not the object lacking it).
    assert error["details"] == [
        {
            "path": ["reviewer"],
            "message": "'reviewer' is a required property",
            "keyword": "required",
        },
        {"path": ["approved"], "message": "'maybe' is not of type 'boolean'", "keyword": "type"},
    ]
    # The remote client raises the same error, details included.
    remote = KitaruClient(server_url=server.url, auth_token=server.admin_key)
    with pytest.raises(KitaruWaitValidationError, match="does not match its schema") as raised:
        remote.executions.input(handle.exec_id, wait="review", value={"approved": True})
    assert raised.value.details == [
        {
            "path": ["reviewer"],
            "message": "'reviewer' is a required property",
            "keyword": "required",
        }
    ]
    # Nothing changed: still waiting, the wait still pending.
    assert KitaruClient().executions.get(handle.exec_id).status.value == "waiting"
    assert api.get(f"/executions/{handle.exec_id}/waits").json()["count"] == 1
    # Read-only keys cannot answer.
    assert (
        server.reader.post(
            f"/executions/{handle.exec_id}/input",
            json={"wait": "review", "value": {"approved": True, "reviewer": "ro"}},
        ).status_code
        == 403
    )

    ok = api.post(
        f"/executions/{handle.exec_id}/input",
        json={"wait": "review", "value": {"approved": True, "reviewer": "ana"}},
    )
    assert ok.status_code == 200, ok.text
    assert handle.wait(timeout=30) == "3:True:ana"


@pytest.mark.parametrize(
    "answer",
    [
        {"approved": "yes", "reviewer": "ana"},  # Pydantic's lax bool
        {"approved": 1, "reviewer": "ana", "unknown": "dropped"},  # extra keys dropped
    ],
)
def test_wait_answers_are_coerced_as_the_flows_own_type_would(
    server: Server, answer: dict[str, Any]
) -> None:
    # Where the flow runs, wait(schema=Approval) takes these; the server, which only has
    # the JSON schema, takes them too and stores what the type makes of them.
    local, remote = _flows.approval.run(2), _flows.approval.run(2)
    _wait_status(local.exec_id, "waiting")
    _wait_status(remote.exec_id, "waiting")
    KitaruClient().executions.input(local.exec_id, wait="review", value=answer)
    ok = server.admin.post(
        f"/executions/{remote.exec_id}/input", json={"wait": "review", "value": answer}
    )
    assert ok.status_code == 200, ok.text
    assert remote.wait(timeout=30) == local.wait(timeout=30) == "3:True:ana"
    [stored] = get_backend().store.waits(remote.exec_id)
    assert stored.value == {"approved": True, "reviewer": "ana"}
    # What the type refuses, the server still refuses with the schema's own words.
    still = _flows.approval.run(2)
    _wait_status(still.exec_id, "waiting")
    refused = server.admin.post(
        f"/executions/{still.exec_id}/input",
        json={"wait": "review", "value": {"approved": "maybe", "reviewer": "ana"}},
    )
    assert refused.status_code == 422
    assert _error(refused)["details"] == [
        {"path": ["approved"], "message": "'maybe' is not of type 'boolean'", "keyword": "type"}
    ]
    KitaruClient().executions.cancel(still.exec_id)


def test_abort_and_cancel(server: Server) -> None:
    api = server.admin
    gated = _flows.gate.run(1)
    _wait_status(gated.exec_id, "waiting")
    aborted = api.post(f"/executions/{gated.exec_id}/abort-wait", json={"wait": "go"})
    assert aborted.status_code == 200, aborted.text
    with pytest.raises(Exception, match="abort"):
        gated.wait(timeout=30)

    other = _flows.gate.run(2)
    _wait_status(other.exec_id, "waiting")
    cancelled = api.post(f"/executions/{other.exec_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    deleted = api.delete(f"/executions/{other.exec_id}")
    assert deleted.status_code == 200
    assert api.get(f"/executions/{other.exec_id}").status_code == 404


def test_retry_hands_over_to_a_worker(server: Server) -> None:
    handle = _flows.failing.run(4)
    with pytest.raises(Exception, match="boom"):
        handle.wait()
    retried = server.admin.post(f"/executions/{handle.exec_id}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "running"
    # Handed over, not run yet: the worker that runs it counts the run.
    assert KitaruClient().executions.get(handle.exec_id).run_count == 1
    # The server does not run flow code: a worker picks the execution up.
    from kitaru.worker import run_worker

    assert run_worker(once=True) == 1
    with pytest.raises(Exception, match="boom"):
        handle.wait(timeout=30)
    assert KitaruClient().executions.get(handle.exec_id).run_count == 2


def test_stream_sends_events_and_logs_then_ends(server: Server) -> None:
    done = _flows.adder.run(7)
    done.wait()
    kinds: list[str] = []
    ids: list[str] = []
    with server.admin.stream("GET", f"/executions/{done.exec_id}/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                kinds.append(line.removeprefix("event: "))
            elif line.startswith("id: "):
                ids.append(line.removeprefix("id: "))
    assert "event" in kinds
    assert "log" in kinds
    assert kinds[-1] == "end"
    # Resuming from the last id sends nothing old again.
    with server.admin.stream(
        "GET", f"/executions/{done.exec_id}/stream", headers={"Last-Event-ID": ids[-1]}
    ) as response:
        again = [
            line.removeprefix("event: ")
            for line in response.iter_lines()
            if line.startswith("event: ")
        ]
    assert again == ["status", "end"]


def test_stream_follows_a_live_execution(server: Server) -> None:
    gated = _flows.gate.run(5)
    _wait_status(gated.exec_id, "waiting")
    seen: list[tuple[str, str]] = []
    with server.admin.stream("GET", f"/executions/{gated.exec_id}/stream") as response:
        kind = ""
        answered = False
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                seen.append((kind, data.get("status") or data.get("kind") or data["message"]))
                if kind == "status" and data["status"] == "waiting" and not answered:
                    # Answer while the stream is open: it carries on to the end.
                    reply = server.admin.post(
                        f"/executions/{gated.exec_id}/input", json={"wait": "go"}
                    )
                    assert reply.status_code == 200, reply.text
                    answered = True
    assert gated.wait(timeout=30) == 7
    assert ("status", "waiting") in seen
    assert ("log", "adding 5 and 2") in seen
    assert seen[-1] == ("end", "completed")


def test_replay_code_overrides_need_a_runner_key_and_are_never_imported_by_the_server(
    server: Server,
) -> None:
    """A 'code' override names code that workers import and run: a read-write key may
    not give one (403, nothing written); a runner key may, and the server only checks
    its form (it imports no user code: a module that does not exist here is accepted)."""
    source = _flows.tooling.run("ls")
    assert source.wait(timeout=30) == "ran ls"
    body = {
        "executions": [source.exec_id],
        "at": "shell_tool",
        "invocation_overrides": {"shell_tool": {"code": "os.system", "input": {"command": "id"}}},
    }
    before = len(KitaruClient().executions.list())
    refused = server.admin.post("/replays", json=body)
    assert refused.status_code == 403, refused.text
    error = _error(refused)
    assert error["type"] == "KitaruPermissionError"
    assert "--runner" in error["message"]
    assert "'shell_tool'" in error["message"]
    assert len(KitaruClient().executions.list()) == before
    by_name = {**body, "invocation_overrides": None}
    by_name["checkpoint_overrides"] = {"shell_tool": {"code": "os.system"}}
    assert server.admin.post("/replays", json=by_name).status_code == 403

    runner = server.client(server.runner_key)
    malformed = {**body, "invocation_overrides": {"shell_tool": {"code": "not a path!"}}}
    bad = runner.post("/replays", json=malformed)
    assert bad.status_code == 400, bad.text
    assert "module.function" in _error(bad)["message"]
    elsewhere = {
        **body,
        "invocation_overrides": {"shell_tool": {"code": "kitaru_qa_nowhere.tools.run"}},
    }
    accepted = runner.post("/replays", json=elsewhere)
    assert accepted.status_code == 200, accepted.text
    assert len(KitaruClient().executions.list()) == before + 1
    # Output overrides stay a read-write key's right; the source may be given as the
    # client names it (`execution`: one id, or a list).
    plain = {**body, "invocation_overrides": {"shell_tool": {"output": "stubbed"}}}
    assert server.admin.post("/replays", json=plain).status_code == 200
    one = {k: v for k, v in plain.items() if k != "executions"} | {"execution": source.exec_id}
    named = server.admin.post("/replays", json=one)
    assert named.status_code == 200, named.text
    assert [r["original_exec_id"] for r in named.json()["results"]] == [source.exec_id]
    both = {**plain, "execution": source.exec_id}
    assert server.admin.post("/replays", json=both).status_code == 422
