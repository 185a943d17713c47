"""``kitaru-mcp`` as a real subprocess, driven by the ``mcp`` SDK's client over stdio."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests._extras import need

need("mcp", "mcp")

from mcp import Client, StdioServerParameters  # noqa: E402

from kitaru.client import KitaruClient  # noqa: E402
from tests._env import process_env  # noqa: E402

FLOWS = Path(__file__).with_name("_mcp_flows.py")

EXPECTED_TOOLS = {
    "kitaru_executions_list",
    "kitaru_executions_get",
    "kitaru_executions_latest",
    "kitaru_executions_run",
    "kitaru_executions_cancel",
    "kitaru_executions_input",
    "kitaru_executions_abort_wait",
    "kitaru_executions_resume",
    "kitaru_executions_retry",
    "kitaru_executions_replay",
    "kitaru_executions_delete",
    "kitaru_executions_statistics",
    "get_execution_logs",
    "kitaru_artifacts_list",
    "kitaru_artifacts_get",
    "kitaru_stacks_list",
    "kitaru_status",
}


def _server(home: Path) -> StdioServerParameters:
    script = shutil.which("kitaru-mcp", path=str(Path(sys.executable).parent))
    assert script is not None, "the kitaru-mcp console script is not installed"
    return StdioServerParameters(command=script, env=process_env(home), cwd=str(home.parent))


def _session(home: Path, body: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Client(_server(home), read_timeout_seconds=60) as client:
            await body(client)

    asyncio.run(main())


async def _ok(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    text = result.content[0].text  # type: ignore[union-attr]
    assert not result.is_error, text
    return json.loads(text)


async def _error(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error
    return str(result.content[0].text)  # type: ignore[union-attr]


async def _until(client: Client, exec_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        execution = await _ok(client, "kitaru_executions_get", exec_id=exec_id)
        if execution["status"] == status or time.monotonic() > deadline:
            assert execution["status"] == status, execution
            return execution  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)


def test_run_answer_inspect_and_replay_over_stdio(kitaru_home: Path) -> None:
    async def body(client: Client) -> None:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools >= EXPECTED_TOOLS

        started = await _ok(
            client,
            "kitaru_executions_run",
            target=f"{FLOWS}:review",
            inputs={"topic": "ducks"},
            wait=True,
        )
        exec_id = started["exec_id"]
        assert started["status"] == "waiting"
        assert [w["name"] for w in started["pending_waits"]] == ["approve"]

        # A value the wait's schema rejects is a tool error; the execution keeps waiting.
        rejected = await _error(client, "kitaru_executions_input", exec_id=exec_id, value={"no": 1})
        assert rejected.startswith("Error executing tool kitaru_executions_input: ")
        assert "KitaruWaitValidationError" in rejected

        await _ok(client, "kitaru_executions_input", exec_id=exec_id, wait="approve", value=True)
        done = await _until(client, exec_id, "completed")
        assert [c["name"] for c in done["checkpoints"]] == ["draft", "publish"]

        latest = await _ok(client, "kitaru_executions_latest", flow="review")
        assert latest["exec_id"] == exec_id
        listed = await _ok(client, "kitaru_executions_list", status="completed")
        assert [e["exec_id"] for e in listed["items"]] == [exec_id]

        logs = await _ok(client, "get_execution_logs", exec_id=exec_id)
        assert any("drafting ducks" in line["message"] for line in logs["items"])

        artifacts = await _ok(client, "kitaru_artifacts_list", exec_id=exec_id, name="notes")
        (notes,) = artifacts["items"]
        got = await _ok(
            client, "kitaru_artifacts_get", artifact_id=notes["artifact_id"], include_value=True
        )
        assert got["value"] == {"topic": "ducks"}

        stats = await _ok(client, "kitaru_executions_statistics", group_by=["status"])
        assert stats["groups"][0]["keys"] == {"status": "completed"}

        # The replay reuses draft's recorded output and the answer given before publish.
        replay = await _ok(
            client,
            "kitaru_executions_replay",
            exec_id=exec_id,
            at="publish",
            checkpoint_overrides={"publish": {"input": {"text": "edited", "approved": True}}},
            wait=False,
        )
        replay_id = replay["results"][0]["replay_exec_id"]
        replayed = await _until(client, replay_id, "completed")
        assert replayed["original_exec_id"] == exec_id
        assert [c["call_status"] for c in replayed["checkpoints"]] == ["reused", "completed"]

        deleted = await _ok(client, "kitaru_executions_delete", exec_id=replay_id)
        assert deleted == {"exec_id": replay_id, "deleted": True}

        stacks = await _ok(client, "kitaru_stacks_list")
        assert [s["name"] for s in stacks["items"]] == ["local"]
        status = await _ok(client, "kitaru_status")
        assert status["active_stack"]["name"] == "local"

    _session(kitaru_home, body)


def test_delete_a_parent_needs_the_recursive_parameter_over_python_m(kitaru_home: Path) -> None:
    # Served by `python -m kitaru.mcp`, the same server as the console script.
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kitaru.mcp"],
        env=process_env(kitaru_home),
        cwd=str(kitaru_home.parent),
    )

    async def body(client: Client) -> None:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) >= EXPECTED_TOOLS
        delete_tool = tools["kitaru_executions_delete"]
        assert "recursive" in delete_tool.input_schema["properties"]
        assert "recursive=true" in (delete_tool.description or "")

        started = await _ok(
            client, "kitaru_executions_run", target=f"{FLOWS}:parent", inputs={"x": 4}, wait=True
        )
        parent_id = started["exec_id"]
        assert started["status"] == "completed"
        (child_id,) = (await _ok(client, "kitaru_executions_get", exec_id=parent_id))["children"]

        refused = await _error(client, "kitaru_executions_delete", exec_id=parent_id)
        assert "KitaruStateError" in refused
        assert child_id in refused
        assert "kitaru_executions_delete again with recursive=true" in refused
        assert "--recursive" not in refused
        assert (await _ok(client, "kitaru_executions_list"))["count"] == 2  # nothing deleted

        deleted = await _ok(client, "kitaru_executions_delete", exec_id=parent_id, recursive=True)
        assert deleted == {"exec_id": parent_id, "deleted": True}
        assert (await _ok(client, "kitaru_executions_list"))["count"] == 0

    async def main() -> None:
        async with Client(server, read_timeout_seconds=60) as client:
            await body(client)

    asyncio.run(main())


def test_bad_arguments_are_tool_errors(kitaru_home: Path) -> None:
    async def body(client: Client) -> None:
        missing = await _error(client, "kitaru_executions_get", exec_id="no-such-execution")
        assert "KitaruBackendError" in missing
        bad_target = await _error(client, "kitaru_executions_run", target="no colon here")
        assert "KitaruUsageError" in bad_target
        assert "module_or_file:flow" in bad_target
        not_a_flow = await _error(client, "kitaru_executions_run", target=f"{FLOWS}:draft")
        assert "KitaruUsageError" in not_a_flow
        bad_limit = await _error(client, "kitaru_executions_list", limit=0)
        assert "KitaruUsageError" in bad_limit
        # Arguments that do not match the tool's schema are rejected before running.
        assert "exec_id" in await _error(client, "kitaru_executions_cancel")
        none_latest = await _error(client, "kitaru_executions_latest")
        assert "No executions found" in none_latest
        no_time = await _error(
            client, "kitaru_executions_run", target=f"{FLOWS}:review", wait=True, timeout=0
        )
        assert "KitaruUsageError" in no_time
        # Refused before anything ran: still no execution.
        assert (await _ok(client, "kitaru_executions_list"))["count"] == 0

    _session(kitaru_home, body)


def test_cancel_abort_retry_and_resume_over_stdio(kitaru_home: Path) -> None:
    ids: dict[str, str] = {}
    note = kitaru_home.parent / "note.txt"

    async def first(client: Client) -> None:
        async def waiting(topic: str) -> str:
            started = await _ok(
                client,
                "kitaru_executions_run",
                target=f"{FLOWS}:review",
                inputs={"topic": topic},
                wait=True,
            )
            assert started["status"] == "waiting"
            return str(started["exec_id"])

        ids["cancelled"] = await waiting("cancel me")
        cancelled = await _ok(client, "kitaru_executions_cancel", exec_id=ids["cancelled"])
        assert cancelled["status"] == "cancelled"

        # An aborted wait fails the flow (kitaru.wait() raised in it).
        ids["aborted"] = await waiting("abort me")
        await _ok(client, "kitaru_executions_abort_wait", exec_id=ids["aborted"], wait="approve")
        await _until(client, ids["aborted"], "failed")

        # A failed execution retried (same id) once its cause is fixed completes.
        failed = await _ok(
            client,
            "kitaru_executions_run",
            target=f"{FLOWS}:fragile",
            inputs={"path": str(note)},
            wait=True,
        )
        ids["retried"] = failed["exec_id"]
        assert failed["status"] == "failed"
        note.write_text("written later", encoding="utf-8")
        retried = await _ok(client, "kitaru_executions_retry", exec_id=ids["retried"])
        assert retried["exec_id"] == ids["retried"]
        await _until(client, ids["retried"], "completed")

        # Left waiting when this server process exits: its runner is gone.
        ids["resumed"] = await waiting("resume me")

    async def second(client: Client) -> None:
        # Its wait is pending: resume is refused (0.21's contract), naming the way on; the
        # input continues it here, its old runner being gone.
        pending = await _error(client, "kitaru_executions_resume", exec_id=ids["resumed"])
        assert "KitaruStateError" in pending
        assert "executions input" in pending
        await _ok(client, "kitaru_executions_input", exec_id=ids["resumed"], value=True)
        await _until(client, ids["resumed"], "completed")
        # Resuming a completed execution is refused with the reason.
        refused = await _error(client, "kitaru_executions_resume", exec_id=ids["resumed"])
        assert "KitaruStateError" in refused

    _session(kitaru_home, first)
    _session(kitaru_home, second)

    # The store, read in this process, holds what the tools did.
    executions = KitaruClient().executions
    assert executions.get(ids["cancelled"]).status.value == "cancelled"
    aborted = executions.get(ids["aborted"])
    assert aborted.status.value == "failed"
    assert aborted.failure is not None
    assert "abort" in str(aborted.failure).lower()
    retried = executions.get(ids["retried"])
    assert retried.status.value == "completed"
    assert retried.run_count == 2
    (read,) = retried.checkpoints
    assert read.output is not None
    assert read.output.load() == "written later"
    resumed = executions.get(ids["resumed"])
    assert resumed.status.value == "completed"
    assert resumed.run_count == 2
    assert [c.name for c in resumed.checkpoints] == ["draft", "publish"]
    assert resumed.checkpoints[-1].output is not None
    assert resumed.checkpoints[-1].output.load() == {
        "text": "draft about resume me",
        "approved": True,
    }
