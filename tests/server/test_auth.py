"""API keys: who may call what, and that a refused call changes nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kitaru._backend import get_backend
from kitaru.client import KitaruClient
from kitaru.server._accounts import create_key, delete_key, list_keys, rotate_key
from tests.server import _flows
from tests.server.conftest import Server, start_server, stop

CONTROL = ("retry", "resume", "cancel")


def _status(exec_id: str) -> str:
    return KitaruClient().executions.get(exec_id).status.value


def test_every_route_but_health_needs_a_key(server: Server) -> None:
    done = _flows.adder.run(1)
    done.wait()
    anonymous = server.client()
    assert anonymous.get("/health").status_code == 200
    spec = anonymous.get("/openapi.json")
    # The OpenAPI document lives under /api/v1 and is public (it holds no data).
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    checked = 0
    for path, operations in paths.items():
        if path.endswith("/health"):
            continue
        concrete = path.removeprefix("/api/v1").replace("{exec_id}", done.exec_id)
        concrete = concrete.replace("{artifact_id}", "0000")
        for method in operations:
            for client in (anonymous, server.client("kt_nope_nope"), server.client("garbage")):
                response = client.request(method.upper(), concrete, json={})
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["error"]["type"] == "KitaruAuthenticationError"
                assert response.headers["www-authenticate"] == "Bearer"
                checked += 1
    assert checked >= 3 * 15
    assert _status(done.exec_id) == "completed"  # nothing changed


def test_read_only_key_reads_but_cannot_control(server: Server) -> None:
    failed = _flows.failing.run(2)
    with pytest.raises(Exception, match="boom"):
        failed.wait()
    gated = _flows.gate.run(3)
    deadline = time.monotonic() + 30
    while _status(gated.exec_id) != "waiting":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    reader = server.reader
    assert reader.get(f"/executions/{failed.exec_id}").status_code == 200
    assert reader.get("/executions").json()["count"] == 2
    refused: list[Any] = [
        reader.post(f"/executions/{failed.exec_id}/{action}") for action in CONTROL
    ]
    refused.append(reader.post(f"/executions/{gated.exec_id}/input", json={"wait": "go"}))
    refused.append(reader.post(f"/executions/{gated.exec_id}/abort-wait", json={"wait": "go"}))
    refused.append(reader.delete(f"/executions/{failed.exec_id}"))
    for response in refused:
        assert response.status_code == 403, response.text
        assert response.json()["error"]["type"] == "KitaruPermissionError"
    assert _status(failed.exec_id) == "failed"
    assert _status(gated.exec_id) == "waiting"
    assert reader.get(f"/executions/{gated.exec_id}/waits").json()["count"] == 1
    # The read-write key may.
    assert server.admin.post(f"/executions/{gated.exec_id}/cancel").status_code == 200


def test_revoked_and_rotated_keys_stop_working(server: Server) -> None:
    store = get_backend().store
    _key, raw = create_key(store, "ci", "temp", "write")
    assert server.client(raw).get("/version").status_code == 200
    _key, new_raw = rotate_key(store, "ci", "temp")
    assert server.client(raw).get("/version").status_code == 401
    assert server.client(new_raw).get("/version").status_code == 200
    delete_key(store, "ci", "temp")
    assert server.client(new_raw).get("/version").status_code == 401
    # A key with the right id but a wrong secret is refused too.
    forged = new_raw.rsplit("_", 1)[0] + "_" + "A" * 43
    assert server.client(forged).get("/version").status_code == 401


def test_keys_are_stored_as_hashes(server: Server) -> None:
    import sqlalchemy as sa

    from kitaru._store import auth_schema

    store = get_backend().store
    with store.read() as conn:
        hashes = [r.key_hash for r in conn.execute(sa.select(auth_schema.api_keys))]
    assert len(hashes) == 3
    assert server.admin_key not in hashes
    assert all(len(h) == 64 for h in hashes)
    assert all(server.admin_key not in str(k.to_dict()) for k in list_keys(store))


def test_auth_cli(cli: Any, kitaru_home: Path) -> None:
    made = cli("auth", "service-accounts", "create", "bot", "-d", "CI bot", "-o", "json")
    assert made.exit_code == 0, made.stderr
    assert made.json()["item"]["name"] == "bot"
    assert cli("auth", "service-accounts", "create", "bot").exit_code == 1
    key = cli("auth", "api-keys", "create", "bot", "ro", "--read-only", "-o", "json").json()
    assert key["item"]["access"] == "read"
    raw = key["item"]["key"]
    assert raw.startswith("kt_")
    listed = cli("auth", "api-keys", "list", "-o", "json")
    assert listed.json()["count"] == 1
    assert raw not in listed.stdout
    assert "key_hash" not in listed.stdout
    rotated = cli("auth", "api-keys", "rotate", "bot", "ro", "-o", "json").json()["item"]["key"]
    assert rotated != raw
    text = cli("auth", "api-keys", "create", "bot", "rw")
    assert text.exit_code == 0
    assert "shown only now" in text.stdout
    assert cli("auth", "api-keys", "delete", "bot", "ro").exit_code == 0
    runner = cli("auth", "api-keys", "create", "bot", "run", "--runner", "-o", "json")
    assert runner.json()["item"]["access"] == "runner"
    # Lists page as every list command does (--page/--size).
    names = [k["name"] for k in cli("auth", "api-keys", "list", "-o", "json").json()["items"]]
    assert len(names) == 2
    paged = cli("auth", "api-keys", "list", "--page", "2", "--size", "1", "-o", "json").json()
    assert [k["name"] for k in paged["items"]] == names[1:]
    assert paged["count"] == 1
    assert cli("auth", "api-keys", "list", "--page", "0").exit_code == 1
    accounts = cli("auth", "service-accounts", "list", "--page", "1", "--size", "1", "-o", "json")
    assert [a["name"] for a in accounts.json()["items"]] == ["bot"]
    past = cli("auth", "service-accounts", "list", "--page", "5", "-o", "json").json()
    assert past["items"] == []
    assert cli("auth", "api-keys", "create", "bot", "x", "--runner", "--read-only").exit_code == 1
    missing = cli("auth", "api-keys", "delete", "bot", "ro", "-o", "json")
    assert missing.exit_code == 1
    assert missing.stdout == ""
    assert cli("auth", "service-accounts", "delete", "bot").exit_code == 0
    assert cli("auth", "api-keys", "list", "-o", "json").json()["count"] == 0
    assert cli("auth", "service-accounts", "list", "-o", "json").json()["count"] == 0


def test_first_start_prints_an_admin_key_once(kitaru_home: Path, tmp_path: Path) -> None:
    kitaru_home.mkdir(parents=True, exist_ok=True)
    store_url = f"sqlite:///{kitaru_home / 'fresh.db'}"
    log = tmp_path / "first.log"
    url, process = start_server(kitaru_home, store_url, log)
    try:
        printed = [line for line in log.read_text().splitlines() if line.startswith("kt_")]
        assert len(printed) == 1
        import httpx

        headers = {"Authorization": f"Bearer {printed[0]}"}
        assert httpx.get(f"{url}/api/v1/version", headers=headers).status_code == 200
    finally:
        stop(process)
    log2 = tmp_path / "second.log"
    _url, process = start_server(kitaru_home, store_url, log2)
    stop(process)
    assert not [line for line in log2.read_text().splitlines() if line.startswith("kt_")]


def test_a_keys_last_use_is_recorded_at_most_once_a_minute(server: Server) -> None:
    from kitaru._backend import get_backend
    from kitaru.server._accounts import list_keys

    def last_used(name: str) -> float | None:
        (key,) = [k for k in list_keys(get_backend().store) if k.name == name]
        return key.last_used_at

    assert last_used("reader") is None
    before = time.time()
    assert server.reader.get("/executions").status_code == 200
    first = last_used("reader")
    assert first is not None
    assert before - 1 <= first <= time.time() + 1
    assert server.reader.get("/executions").status_code == 200
    assert last_used("reader") == first  # not a write per request
    assert last_used("admin") is None  # only the key that was used
