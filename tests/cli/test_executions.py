"""kitaru executions list|get|resume|retry|replay|cancel|delete, on real executions."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from kitaru.cli import _executions
from kitaru.client import KitaruClient
from kitaru.errors import KitaruExecutionError, KitaruUserCodeError
from tests.cli.conftest import Flows, Invoke

#: Kitaru 0.21's ``executions list`` item keys (ours add a few more).
SUMMARY_KEYS = {
    "exec_id",
    "flow_id",
    "flow_name",
    "status",
    "started_at",
    "ended_at",
    "stack_name",
    "status_reason",
    "pending_wait",
    "failure",
    "metadata",
    "checkpoint_count",
    "artifact_count",
    "llm_usage_summary",
}
#: ``executions get`` adds these.
EXECUTION_KEYS = SUMMARY_KEYS | {
    "frozen_execution_spec",
    "original_exec_id",
    "llm_usage_records",
    "checkpoints",
    "artifacts",
}


def run_ok(flows: Flows, name: str = "simple", x: int = 1) -> str:
    handle = getattr(flows.module, name).run(x)
    handle.wait()
    return str(handle.exec_id)


def run_failing(flows: Flows, x: int = 1) -> str:
    """An ``agent`` execution that fails in ``think`` (it succeeds when retried)."""
    handle = flows.module.agent.run(x)
    with pytest.raises(KitaruUserCodeError):
        handle.wait()
    return str(handle.exec_id)


def assert_one_error_line(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0]


# --- list --------------------------------------------------------------------------------


def test_list_when_empty(cli: Invoke) -> None:
    result = cli("executions", "list")
    assert result.exit_code == 0
    assert "No executions." in result.stdout
    document = cli("executions", "list", "-o", "json").json()
    assert document["command"] == "executions.list"
    assert document["items"] == []
    assert document["count"] == 0
    assert set(document) == {"command", "items", "count"}


def test_list_table_and_json(cli: Invoke, flows: Flows) -> None:
    ok = run_ok(flows)
    failed = run_failing(flows)

    table = cli("executions", "list")
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    failed_line = next(line for line in lines if failed in line)
    ok_line = next(line for line in lines if ok in line)
    assert lines.index(failed_line) < lines.index(ok_line)  # newest first
    assert "agent" in failed_line
    assert "failed" in failed_line
    assert "simple" in ok_line
    assert "completed" in ok_line
    assert ok_line.rstrip(" │").endswith("1")  # one checkpoint call
    assert failed_line.rstrip(" │").endswith("2")

    document = cli("executions", "list", "-o", "json").json()
    assert set(document) >= {"command", "items", "count"}
    assert document["count"] == 2
    assert [item["exec_id"] for item in document["items"]] == [failed, ok]
    assert set(document["items"][0]) >= SUMMARY_KEYS
    assert "checkpoints" not in document["items"][0]  # a summary, as in 0.21
    assert document["items"][0]["checkpoint_count"] == 2
    assert document["items"][0]["status"] == "failed"


def test_list_filters(cli: Invoke, flows: Flows) -> None:
    ok = run_ok(flows)
    failed = run_failing(flows)

    def ids(*args: str) -> list[str]:
        result = cli("executions", "list", "-o", "json", *args)
        assert result.exit_code == 0, result.stdout
        return [item["exec_id"] for item in result.json()["items"]]

    assert ids("--flow", "simple") == [ok]
    assert ids("--flow", "agent") == [failed]
    assert ids("--flow", "nothing") == []
    assert ids("--status", "failed") == [failed]
    assert ids("--status", "completed", "--status", "FAILED") == [failed, ok]
    assert ids("--status", "running") == []


def test_list_pages(cli: Invoke, flows: Flows) -> None:
    created = [run_ok(flows, x=i) for i in range(5)]
    newest_first = list(reversed(created))

    def page(*args: str) -> dict[str, object]:
        result = cli("executions", "list", "-o", "json", *args)
        assert result.exit_code == 0, result.stderr
        document = result.json()
        assert set(document) == {"command", "items", "count"}
        return document

    pages = [page("--size", "2", "--page", str(n)) for n in (1, 2, 3, 4)]
    assert [p["count"] for p in pages] == [2, 2, 1, 0]
    seen = [item["exec_id"] for p in pages for item in p["items"]]  # type: ignore[attr-defined]
    assert seen == newest_first
    assert page("--size", "2")["items"] == pages[0]["items"]
    assert page()["count"] == 5  # default size 20
    limited = page("--limit", "3")
    assert [item["exec_id"] for item in limited["items"]] == newest_first[:3]  # type: ignore[attr-defined]

    table = cli("executions", "list", "--size", "2")
    assert "More: --page 2" in table.stdout
    assert newest_first[2] not in table.stdout

    for bad_args in (("--page", "0"), ("--size", "0"), ("--limit", "0")):
        bad = cli("executions", "list", "-o", "json", *bad_args)
        assert bad.exit_code == 1, bad_args
        assert bad.stdout == ""
    both = cli("executions", "list", "-o", "json", "--limit", "2", "--page", "1")
    assert both.exit_code == 1
    assert "--limit" in both.stderr


# --- get ---------------------------------------------------------------------------------


def test_get_failed_execution_shows_timeline_and_failure(cli: Invoke, flows: Flows) -> None:
    exec_id = run_failing(flows)
    result = cli("executions", "get", exec_id)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert exec_id in out
    assert "Checkpoint timeline" in out
    fetch_line = next(line for line in out.splitlines() if "│ fetch" in line)
    think_line = next(line for line in out.splitlines() if "│ think" in line)
    assert "completed" in fetch_line
    assert "failed" in think_line
    assert "llm" in think_line  # checkpoint type
    assert "1 (1 failed)" in think_line  # attempts
    assert "user_code" in out
    assert "ValueError" in out
    assert "model overloaded" in out

    document = cli("executions", "get", exec_id, "-o", "json").json()
    assert set(document) == {"command", "item"}
    assert document["command"] == "executions.get"
    item = document["item"]
    assert set(item) >= EXECUTION_KEYS
    assert item["exec_id"] == exec_id
    assert item["status"] == "failed"
    assert item["status_reason"] == item["failure"]["message"]
    assert [c["call_id"] for c in item["checkpoints"]] == ["fetch", "think"]
    assert item["failure"]["origin"] == "user_code"
    assert item["failure"]["exception_type"] == "ValueError"


def test_get_shows_cached_checkpoints(cli: Invoke, flows: Flows) -> None:
    run_ok(flows, x=4)
    second = run_ok(flows, x=4)  # same inputs: the cross-run cache answers
    item = cli("executions", "get", second, "-o", "json").json()["item"]
    assert [c["status"] for c in item["checkpoints"]] == ["completed"]
    assert [c["call_status"] for c in item["checkpoints"]] == ["cached"]
    line = next(
        line for line in cli("executions", "get", second).stdout.splitlines() if "steady" in line
    )
    assert "cached" in line


# --- retry -------------------------------------------------------------------------------


def test_retry_a_failed_execution(cli: Invoke, flows: Flows) -> None:
    exec_id = run_failing(flows)
    result = cli("executions", "retry", exec_id)
    assert result.exit_code == 0, result.stderr
    assert "completed" in result.stdout
    think_line = next(line for line in result.stdout.splitlines() if "│ think" in line)
    assert "2 (1 failed, 2 runs)" in think_line

    execution = KitaruClient().executions.get(exec_id)
    assert execution.status.value == "completed"
    assert execution.run_count == 2
    fetch, think, finish = execution.checkpoints
    assert len(fetch.attempts) == 1  # completed checkpoints were reused, not re-run
    assert [a.status for a in think.attempts] == ["failed", "completed"]
    assert finish.output is not None
    assert finish.output.load() == {"answer": 20}

    again = cli("executions", "retry", exec_id)
    assert again.exit_code == 1
    assert_one_error_line(again.stderr, exec_id, "completed")


def test_retry_json_in_a_real_process(kitaru_proc: Invoke, flows: Flows) -> None:
    exec_id = run_failing(flows, x=2)
    result = kitaru_proc("executions", "retry", exec_id, "-o", "json")
    assert result.exit_code == 0, result.stderr + result.stdout
    document = result.json()
    assert set(document) == {"command", "item"}
    assert document["command"] == "executions.retry"
    item = document["item"]
    assert item["exec_id"] == exec_id
    assert item["status"] == "completed"
    assert item["failure"] is None
    assert [c["status"] for c in item["checkpoints"]] == ["completed"] * 3


def test_retry_that_fails_again_exits_1(cli: Invoke, flows: Flows) -> None:
    exec_id = run_failing(flows)
    (flows.state / "think-failed-once").unlink()  # make it fail once more
    result = cli("executions", "retry", exec_id, "-o", "json")
    # A failing command: the error document on stderr, stdout empty (0.21's CLI contract).
    assert result.exit_code == 1
    assert result.stdout == ""
    error = json.loads(result.stderr)
    assert error["command"] == "executions.retry"
    assert error["error"]["type"] == "KitaruUserCodeError"
    assert "model overloaded" in error["error"]["message"]
    assert KitaruClient().executions.get(exec_id).run_count == 2

    (flows.state / "think-failed-once").unlink()
    table = cli("executions", "retry", exec_id)
    assert table.exit_code == 1
    assert "model overloaded" in table.stdout  # the failure section
    assert table.stderr.strip().splitlines()[-1] == (
        f"Error: execution {exec_id} failed: model overloaded"
    )


def test_retry_no_wait(cli: Invoke, flows: Flows) -> None:
    exec_id = run_failing(flows)
    result = cli("executions", "retry", exec_id, "--no-wait", "-o", "json")
    assert result.exit_code == 0
    assert result.json()["item"]["exec_id"] == exec_id
    final = KitaruClient().executions.wait(exec_id, timeout=30)
    assert final.status.value == "completed"


# --- cancel and delete -------------------------------------------------------------------


def _wait_for(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_cancel_then_delete(cli: Invoke, flows: Flows) -> None:
    handle = flows.module.slow.run(3)
    exec_id = handle.exec_id
    _wait_for((flows.state / "blocked").exists)

    listed = cli("executions", "list", "--status", "running", "-o", "json").json()
    assert [item["exec_id"] for item in listed["items"]] == [exec_id]

    cancelled = cli("executions", "cancel", exec_id, "-o", "json")
    assert cancelled.exit_code == 0, cancelled.stdout
    assert cancelled.json()["command"] == "executions.cancel"
    assert cancelled.json()["item"]["status"] == "cancelled"
    (flows.state / "release").write_text("x")
    with pytest.raises(KitaruExecutionError) as caught:
        handle.wait(timeout=30)
    assert caught.value.status == "cancelled"

    again = cli("executions", "cancel", exec_id)
    assert again.exit_code == 1
    assert_one_error_line(again.stderr, exec_id, "cancelled")

    # No terminal on stdin: --yes is required.
    refused = cli("executions", "delete", exec_id)
    assert refused.exit_code == 1
    assert_one_error_line(refused.stderr, "--yes", "not a terminal")
    assert KitaruClient().executions.get(exec_id).exec_id == exec_id

    deleted = cli("executions", "delete", exec_id, "--yes", "-o", "json")
    assert deleted.exit_code == 0
    assert deleted.json() == {
        "command": "executions.delete",
        "item": {"exec_id": exec_id, "flow_name": "slow", "status": "cancelled", "deleted": True},
    }
    gone = cli("executions", "get", exec_id)
    assert gone.exit_code == 1
    assert_one_error_line(gone.stderr, exec_id)


def test_delete_asks_on_a_terminal(
    cli: Invoke, flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    exec_id = run_ok(flows)
    monkeypatch.setattr(_executions, "_stdin_is_tty", lambda: True)

    declined = cli("executions", "delete", exec_id, input="n\n")
    assert declined.exit_code == 1
    assert "was not deleted" in declined.stderr
    assert KitaruClient().executions.get(exec_id).exec_id == exec_id

    confirmed = cli("executions", "delete", exec_id, input="y\n")
    assert confirmed.exit_code == 0, confirmed.stderr
    assert f"Deleted execution {exec_id}" in confirmed.stdout
    assert cli("executions", "get", exec_id).exit_code == 1


@pytest.mark.parametrize(
    "args",
    [
        ["get"],
        ["resume"],
        ["retry"],
        ["cancel"],
        ["delete", "--yes"],
        ["replay", "--at", "x"],
    ],
    ids=lambda a: a[0],
)
def test_unknown_execution_id(cli: Invoke, args: list[str]) -> None:
    result = cli("executions", args[0], "missing-exec-id", *args[1:])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert_one_error_line(result.stderr, "missing-exec-id")

    as_json = cli("executions", args[0], "missing-exec-id", *args[1:], "-o", "json").error_json()
    assert as_json["command"] == f"executions.{args[0]}"
    assert as_json["error"]["type"] == "KitaruBackendError"
