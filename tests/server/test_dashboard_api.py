"""The dashboard's API routes and files, against a real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.server import _flows
from tests.server.conftest import Server
from tests.server.test_api import _wait_status

STATIC = Path(__file__).resolve().parents[2] / "src" / "kitaru" / "server" / "dashboard" / "static"


def test_dashboard_routes(server: Server) -> None:
    """One server for all of them: each server start costs seconds."""
    _me(server)
    _pending_waits(server)
    _flows_with_success_rate(server)
    _search(server)
    _feed(server)
    _page_and_files(server)


def _me(server: Server) -> None:
    admin = server.admin.get("/me").json()
    assert admin == {
        "service_account": "ci",
        "name": "admin",
        "access": "write",
        "can_write": True,
    }
    reader = server.reader.get("/me").json()
    assert (reader["access"], reader["can_write"]) == ("read", False)
    assert server.client().get("/me").status_code == 401
    assert server.client("not-a-key").get("/me").status_code == 401


def _pending_waits(server: Server) -> None:
    gated = _flows.gate.run(1)
    asked = _flows.approval.run(2)
    _wait_status(gated.exec_id, "waiting")
    _wait_status(asked.exec_id, "waiting")
    page = server.reader.get("/waits").json()
    by_exec = {w["exec_id"]: w for w in page["items"]}
    assert set(by_exec) == {gated.exec_id, asked.exec_id}
    assert by_exec[gated.exec_id]["name"] == "go"
    assert by_exec[gated.exec_id]["schema"] is None
    assert by_exec[asked.exec_id]["flow_name"] == "approval"
    assert by_exec[asked.exec_id]["question"] == "Ship it?"
    assert by_exec[asked.exec_id]["schema"]["properties"]["approved"]["type"] == "boolean"
    server.admin.post(f"/executions/{gated.exec_id}/abort-wait", json={"wait": "go"})
    server.admin.post(f"/executions/{asked.exec_id}/abort-wait", json={"wait": "review"})
    assert server.reader.get("/waits").json()["count"] == 0
    for handle in (gated, asked):  # let their runners finish before the store goes
        with pytest.raises(Exception, match="abort"):
            handle.wait(timeout=30)


def _flows_with_success_rate(server: Server) -> None:
    ok = [_flows.adder.run(i) for i in range(2)]
    for handle in ok:
        handle.wait()
    bad = _flows.failing.run(1)
    with pytest.raises(Exception, match="boom"):
        bad.wait()
    page = server.reader.get("/flows", params={"recent": 1}).json()
    flows = {f["flow_name"]: f for f in page["items"]}
    assert flows["adder"]["total"] == 2
    assert flows["adder"]["success_rate"] == 1.0
    assert flows["failing"]["success_rate"] == 0.0
    assert flows["failing"]["by_status"] == {"failed": 1}
    assert [r["exec_id"] for r in flows["failing"]["recent"]] == [bad.exec_id]
    assert len(flows["adder"]["recent"]) == 1


def _search(server: Server) -> None:
    done = _flows.adder.run(1)
    done.wait()
    other = _flows.failing.run(2)
    with pytest.raises(Exception, match="boom"):
        other.wait()
    api = server.reader

    def ids(**params: str) -> list[str]:
        body = api.get("/executions", params=params).json()
        return [e["exec_id"] for e in body["items"]]

    assert ids(q=done.exec_id[:6]) == [done.exec_id]
    assert ids(q="DDE")[0] == done.exec_id  # any case, any part of the name
    assert ids(q="%") == []  # LIKE wildcards are literal
    assert ids(q="ail", status="failed")[0] == other.exec_id
    assert set(ids(q="ail")) == set(ids(flow="failing"))
    item = api.get("/executions", params={"q": done.exec_id}).json()["items"][0]
    assert (item["checkpoints_done"], item["checkpoint_count"]) == (1, 1)


def _feed(server: Server) -> None:
    seen: list[tuple[str, dict[str, object]]] = []
    with server.reader.stream("GET", "/feed") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        handle = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                seen.append((kind, data))
                if kind == "ready":
                    handle = _flows.gate.run(3)  # created after the stream started
                elif (
                    handle is not None
                    and data.get("exec_id") == handle.exec_id
                    and data["status"] == "waiting"
                ):
                    break
    assert handle is not None
    mine = [d for k, d in seen if k == "change" and d["exec_id"] == handle.exec_id]
    assert mine[0]["new"] is True
    assert mine[-1]["status"] == "waiting"
    server.admin.post(f"/executions/{handle.exec_id}/abort-wait", json={"wait": "go"})
    with pytest.raises(Exception, match="abort"):
        handle.wait(timeout=30)


def _page_and_files(server: Server) -> None:
    import httpx

    page = httpx.get(f"{server.url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'self'" in csp
    assert '<script type="module" src="/dashboard/js/main.js">' in page.text
    script = httpx.get(f"{server.url}/dashboard/js/main.js", timeout=10)
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    css = httpx.get(f"{server.url}/dashboard/app.css", timeout=10)
    assert css.status_code == 200
    assert "text/css" in css.headers["content-type"]
    assert httpx.get(f"{server.url}/dashboard/../_api.py", timeout=10).status_code == 404
    assert httpx.get(f"{server.url}/dashboard/js/nope.js", timeout=10).status_code == 404
    # The page itself carries no data and needs no key; the API still does.
    assert httpx.get(f"{server.api}/executions", timeout=10).status_code == 401


def test_static_files_are_offline_and_never_parse_html() -> None:
    """No CDN, no remote fonts; data reaches the DOM as text, never through innerHTML."""
    files = [p for p in STATIC.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"index.html", "app.css", "main.js", "api.js"}
    for path in files:
        text = path.read_text()
        remote = re.findall(r"(?:src|href|url|import)\s*[=(]?\s*[\"']?(?:https?:)?//", text)
        assert not remote, f"{path.name} loads something from another host: {remote}"
        if path.suffix == ".js":
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
                assert sink not in text, f"{path.name} uses {sink}"
