"""Kitaru 0.21's list rules (pagination, status filters, latest) and short id prefixes.

On SQLite and PostgreSQL. Prefixes are accepted wherever an id is taken: by
the client and by the CLI (in this process and as a real ``kitaru`` process).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

import kitaru
from kitaru import (
    ExecutionStatus,
    FlowHandle,
    KitaruClient,
    KitaruError,
    KitaruUsageError,
    KitaruUserCodeError,
)
from kitaru._backend import get_backend
from kitaru._store import ExecutionRecord
from kitaru.cli import app
from kitaru.client import Execution
from tests.compat._client_support import replay_id


@kitaru.checkpoint
def shout(text: str) -> str:
    print(f"shouting {text}")
    kitaru.save("said", text, type="response")
    return text.upper()


@kitaru.checkpoint
def refuse(n: int) -> int:
    raise ValueError(f"no {n}")


@kitaru.flow
def loud(text: str) -> str:
    return shout(text)


@kitaru.flow
def grumpy(n: int) -> int:
    return refuse(n)


@kitaru.flow
def asks(n: int) -> str:
    answer = kitaru.wait(schema=str, name="reply", question="Reply?")
    return f"{n}: {answer}"


def _until_waiting(client: KitaruClient, exec_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.executions.get(exec_id).pending_wait is None:
        assert time.monotonic() < deadline, f"{exec_id} never waited"
        time.sleep(0.02)


def _ids(executions: list[Execution]) -> list[str]:
    return [e.exec_id for e in executions]


def _run_five() -> list[str]:
    """Five finished executions, newest first: loud x3 (completed), grumpy x2 (failed)."""
    ids = []
    starts: list[Callable[[], FlowHandle]] = [
        lambda: loud.run("a"),
        lambda: grumpy.run(1),
        lambda: loud.run("b"),
        lambda: grumpy.run(2),
        lambda: loud.run("c"),
    ]
    for start in starts:
        handle = start()
        with contextlib.suppress(KitaruUserCodeError):
            handle.wait(timeout=60)
        ids.append(handle.exec_id)
        time.sleep(0.002)  # distinct creation times
    return ids[::-1]


# --- executions.list ---------------------------------------------------------------------------


def test_list_pages_limits_and_filters(any_store: str) -> None:
    newest_first = _run_five()
    executions = KitaruClient().executions
    assert _ids(executions.list()) == newest_first
    assert _ids(executions.list(limit=2)) == newest_first[:2]
    assert _ids(executions.list(size=2)) == newest_first[:2]  # size alone = page 1
    assert _ids(executions.list(page=1, size=2)) == newest_first[:2]
    assert _ids(executions.list(page=2, size=2)) == newest_first[2:4]
    assert _ids(executions.list(page=3, size=2)) == newest_first[4:]
    assert _ids(executions.list(page=9, size=2)) == []  # past the end: empty
    assert _ids(executions.list(flow="loud", page=2, size=2)) == [newest_first[4]]
    failed = [newest_first[1], newest_first[3]]
    for status in ("failed", "FAILED", "Failed", ExecutionStatus.FAILED):
        assert _ids(executions.list(status=status)) == failed
    assert _ids(executions.list(status="completed", flow="grumpy")) == []
    assert _ids(executions.list(status="running")) == []


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"page": 0, "size": 2}, "page"),
        ({"size": 0}, "size"),
        ({"page": 2}, "size"),  # page without size
        ({"limit": 2, "page": 1, "size": 2}, "limit"),
        ({"limit": 2, "size": 2}, "limit"),
        ({"limit": 2, "page": 1}, "limit"),
        ({"status": "finished"}, "finished"),
        ({"status": ""}, "status"),
    ],
)
def test_list_refuses_bad_arguments(any_store: str, kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(KitaruUsageError, match=named):
        KitaruClient().executions.list(**kwargs)


def test_latest_by_flow_and_status(any_store: str) -> None:
    newest_first = _run_five()
    executions = KitaruClient().executions
    assert executions.latest().exec_id == newest_first[0]
    assert executions.latest(flow="grumpy").exec_id == newest_first[1]
    assert executions.latest(status="failed").exec_id == newest_first[1]
    assert (
        executions.latest(flow="loud", status=ExecutionStatus.COMPLETED).exec_id
        == (newest_first[0])
    )
    with pytest.raises(LookupError, match="grumpy"):
        executions.latest(flow="grumpy", status="completed")
    with pytest.raises(KitaruUsageError):
        executions.latest(status="nope")


def test_latest_of_an_empty_store_is_a_lookup_error(any_store: str) -> None:
    with pytest.raises(LookupError, match="No executions"):
        KitaruClient().executions.latest()


# --- artifacts.list / logs argument rules ----------------------------------------------------


def test_artifacts_and_logs_refuse_bad_arguments(any_store: str) -> None:
    handle = loud.run("x")
    handle.wait(timeout=60)
    client = KitaruClient()
    assert [a.name for a in client.artifacts.list(handle.exec_id, limit=1)] == ["inputs"]
    with pytest.raises(KitaruUsageError, match="limit"):
        client.artifacts.list(handle.exec_id, limit=0)
    for bad in (
        {"limit": 0},
        {"checkpoint": ""},
        {"checkpoint": "  "},
        {"source": ""},
        {"source": "driver"},
        {"checkpoint": "shout", "source": "runner"},
    ):
        with pytest.raises(KitaruUsageError):
            client.executions.logs(handle.exec_id, **bad)
    (line,) = client.executions.logs(handle.exec_id, checkpoint="shout", limit=1)
    assert line.message == "shouting x"


# --- short ids ---------------------------------------------------------------------------


def _insert(exec_id: str) -> None:
    """A finished execution record with a chosen id (to make prefixes collide)."""
    now = time.time()
    get_backend().store.create_execution(
        ExecutionRecord(
            id=exec_id,
            flow_name="imported",
            flow_ref={},
            status=ExecutionStatus.COMPLETED,
            stack="local",
            config={},
            created_at=now,
            started_at=now,
            ended_at=now,
        )
    )


def test_every_id_taking_method_accepts_a_unique_prefix(any_store: str) -> None:
    client = KitaruClient()
    handle = loud.run("hi")
    handle.wait(timeout=60)
    exec_id = handle.exec_id
    for prefix in (exec_id[:8], exec_id[:4], exec_id[:20]):
        assert client.executions.get(prefix).exec_id == exec_id
    short = exec_id[:8]
    assert client.executions.resolve_id(short) == exec_id
    assert [e.message for e in client.executions.logs(short)] == ["shouting hi"]
    assert {a.name for a in client.artifacts.list(short)} == {"inputs", "said", "shout", "result"}
    saved = client.artifacts.list(short, name="said")[0]
    assert client.artifacts.get(saved.artifact_id[:8]) == saved
    assert client.executions.pending_waits(short) == []
    replay = client.executions.wait(
        replay_id(client.executions.replay(short, at="shout", wait=False)), timeout=60
    )
    assert replay.original_exec_id == exec_id

    failing = grumpy.run(3)
    with pytest.raises(KitaruUserCodeError):
        failing.wait(timeout=60)
    retried = client.executions.retry(failing.exec_id[:8])
    assert retried.exec_id == failing.exec_id
    client.executions.wait(failing.exec_id[:6], timeout=60)

    client.executions.delete(replay.exec_id[:10])
    assert replay.exec_id not in _ids(client.executions.list())


def test_waits_are_answered_and_aborted_by_prefix(any_store: str) -> None:
    client = KitaruClient()
    answered, aborted, by_cli = asks.run(1), asks.run(2), asks.run(3)
    for handle in (answered, aborted, by_cli):
        _until_waiting(client, handle.exec_id)
    client.executions.input(answered.exec_id[:8], wait="reply", value="yes")
    assert answered.wait(timeout=60) == "1: yes"
    client.executions.abort_wait(aborted.exec_id[:8], wait="reply")
    with pytest.raises(KitaruError):
        aborted.wait(timeout=60)
    result = CliRunner().invoke(
        app, ["executions", "input", by_cli.exec_id[:8], "--value", '"cli"', "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    assert by_cli.wait(timeout=60) == "3: cli"


def test_an_ambiguous_prefix_names_the_candidates(any_store: str) -> None:
    first, second = "abcd1111-0000-4000-8000-000000000001", "abcd2222-0000-4000-8000-000000000002"
    _insert(first)
    _insert(second)
    client = KitaruClient()
    for method in (
        client.executions.get,
        client.executions.retry,
        client.executions.cancel,
        client.executions.delete,
        client.executions.logs,
        client.artifacts.list,
    ):
        with pytest.raises(KitaruUsageError, match="ambiguous") as info:
            method("abcd")
        assert first in str(info.value)
        assert second in str(info.value)
    assert client.executions.get("abcd1").exec_id == first
    assert client.executions.get("abcd2222").exec_id == second
    assert len(client.executions.list()) == 2  # a refused call changed nothing


def test_prefixes_are_literal_and_need_four_characters(any_store: str) -> None:
    exec_id = "abcd1111-0000-4000-8000-000000000001"
    _insert(exec_id)
    client = KitaruClient()
    # LIKE wildcards in the text are plain characters, not patterns.
    for text in ("abc_", "ab%1", "a%", "____", "%%%%", "ABCD", "abc"):
        with pytest.raises(KitaruError, match="execution"):
            client.executions.get(text)
    assert client.executions.get(exec_id).exec_id == exec_id
    unknown = str(uuid.uuid4())
    with pytest.raises(KitaruError, match=unknown):
        client.executions.get(unknown)


# --- the CLI -----------------------------------------------------------------------------


def test_cli_get_takes_the_eight_characters_a_table_shows(any_store: str) -> None:
    handle = loud.run("cli")
    handle.wait(timeout=60)
    runner = CliRunner()
    result = runner.invoke(app, ["executions", "get", handle.exec_id[:8], "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["item"]["exec_id"] == handle.exec_id

    # A real `kitaru` process, as a user types it.
    proc = subprocess.run(
        [sys.executable, "-m", "kitaru.cli", "executions", "get", handle.exec_id[:8]],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    assert handle.exec_id in proc.stdout
    assert "Traceback" not in proc.stderr

    logs = runner.invoke(app, ["executions", "logs", handle.exec_id[:8], "-o", "json"])
    assert logs.exit_code == 0, logs.output
    document = json.loads(logs.stdout)
    assert {i["exec_id"] for i in document["items"]} == {handle.exec_id}
    assert [i["message"] for i in document["items"]] == ["shouting cli"]


def test_cli_reports_an_ambiguous_prefix(any_store: str) -> None:
    _insert("abcd1111-0000-4000-8000-000000000001")
    _insert("abcd2222-0000-4000-8000-000000000002")
    result = CliRunner().invoke(app, ["executions", "get", "abcd"])
    assert result.exit_code == 1
    assert "ambiguous" in result.stderr
    assert "abcd1111-0000-4000-8000-000000000001" in result.stderr
    assert "Traceback" not in result.stderr
