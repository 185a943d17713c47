"""``KitaruClient().schedules`` and ``kitaru schedule`` through a real server process."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kitaru._backend import get_backend
from kitaru.client import KitaruClient
from kitaru.client._remote_config import store_only
from kitaru.client._remote_schedules import RemoteSchedulesAPI
from kitaru.errors import KitaruStateError, KitaruUsageError
from kitaru.schedules import SchedulesAPI
from tests.server.conftest import Server

pytest.importorskip("croniter", reason="schedules need the 'schedules' extra (in dev)")


def _connect(monkeypatch: pytest.MonkeyPatch, server: Server, key: str) -> None:
    monkeypatch.setenv("KITARU_SERVER_URL", server.url)
    monkeypatch.setenv("KITARU_AUTH_TOKEN", key)


def test_connected_client_manages_schedules_like_the_store(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _connect(monkeypatch, server, server.runner_key)
    schedules = KitaruClient().schedules
    assert isinstance(schedules, RemoteSchedulesAPI)
    made = schedules.create(
        "morning",
        flow="tests.server._flows:adder",
        cron="0 7 * * *",
        timezone="Europe/Berlin",
        inputs={"x": 2},
        missed="run_once",
    )
    with store_only():  # what the server stored, read from the store itself
        stored = SchedulesAPI(get_backend()).get("morning")
    assert made == stored
    assert made.flow_id == "tests.server._flows:adder"
    assert made.next_run_at is not None
    assert [s.name for s in schedules.list()] == ["morning"]
    assert schedules.get("morning") == stored

    with pytest.raises(KitaruStateError, match="exists already"):
        schedules.create(
            "morning", flow="tests.server._flows:adder", cron="0 7 * * *", inputs={"x": 1}
        )
    with pytest.raises(KitaruUsageError):
        schedules.create("bad", flow="tests.server._flows:adder", cron="not a cron")
    # The server refuses a stack its workers do not know, and stores nothing.
    with pytest.raises(KitaruUsageError, match="Known stacks: local"):
        schedules.create(
            "bad",
            flow="tests.server._flows:adder",
            cron="0 7 * * *",
            inputs={"x": 1},
            stack="nosuch",
        )
    assert [s.name for s in schedules.list()] == ["morning"]

    paused = schedules.pause("morning")
    assert paused.paused
    assert paused.next_run_at is None
    resumed = schedules.resume("morning")
    assert not resumed.paused
    assert resumed.next_run_at is not None
    schedules.delete("morning")
    assert schedules.list() == []
    with pytest.raises(KitaruStateError, match="No schedule named 'morning'"):
        schedules.get("morning")
    with pytest.raises(KitaruStateError, match="No schedule named 'morning'"):
        schedules.delete("morning")


def test_schedule_routes_check_keys_and_input(server: Server) -> None:
    body: dict[str, Any] = {
        "name": "nightly",
        "flow_name": "adder",
        "flow_ref": {"module": "tests.server._flows", "qualname": "adder"},
        "cron": "0 3 * * *",
        "inputs": {"x": 1},
    }
    # Creating names code workers will run: a runner key, not a read-write one; the
    # refusal says so (not "may not record executions", which is not what was asked).
    for client in (server.admin, server.reader):
        refused = client.post("/schedules", json=body)
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["type"] == "KitaruPermissionError"
        assert "may not create schedules" in error["message"]
        assert "workers import and run" in error["message"]
        assert "--runner" in error["message"]
        assert "record executions:" not in error["message"]
    runner = server.client(server.runner_key)
    bad = runner.post("/schedules", json={**body, "cron": "61 * * * *"})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "KitaruUsageError"
    no_ref = runner.post("/schedules", json={**body, "flow_ref": {}})
    assert no_ref.status_code == 400
    assert "flow_ref" in no_ref.json()["error"]["message"]
    assert server.reader.get("/schedules").json() == []  # nothing stored by bad requests
    created = runner.post("/schedules", json=body)
    assert created.status_code == 201, created.text
    assert server.reader.get("/schedules/nightly").json()["cron"] == "0 3 * * *"
    assert server.reader.post("/schedules/nightly/pause").status_code == 403
    assert server.admin.post("/schedules/nightly/pause").json()["paused"] is True
    assert server.reader.delete("/schedules/nightly").status_code == 403
    assert server.admin.delete("/schedules/nightly").json() == {"deleted": "nightly"}
    missing = server.reader.get("/schedules/nightly")
    assert missing.status_code == 404  # an unknown id; the error type is the store API's
    assert missing.json()["error"]["type"] == "KitaruStateError"


def test_schedule_cli_through_the_server(
    server: Server, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    _connect(monkeypatch, server, server.runner_key)
    made = cli(
        "schedule",
        "create",
        "hourly",
        "--flow",
        "tests.server._flows:adder",
        "--cron",
        "0 * * * *",
        "--inputs",
        '{"x": 3}',
        "-o",
        "json",
    )
    assert made.exit_code == 0, made.stderr
    listed = cli("schedule", "list", "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    assert [item["name"] for item in json.loads(listed.stdout)["items"]] == ["hourly"]
    assert cli("schedule", "pause", "hourly").exit_code == 0
    with store_only():
        assert SchedulesAPI(get_backend()).get("hourly").paused
    assert cli("schedule", "delete", "hourly", "-o", "json").exit_code == 0
    gone = cli("schedule", "show", "hourly", "-o", "json")
    assert gone.exit_code != 0
    assert "No schedule named 'hourly'" in gone.stdout + gone.stderr
