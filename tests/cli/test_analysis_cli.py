"""kitaru executions statistics | diff | diff-matrix | cohort: text tables and -o json."""

from __future__ import annotations

from typing import Any

from kitaru.client import KitaruClient
from tests.cli.conftest import Flows, Invoke
from tests.cli.test_executions import assert_one_error_line, run_failing, run_ok

DIFF_KEYS = ["original_exec_id", "compared", "urls", "warnings"]


def _item(result: Any, command: str) -> dict[str, Any]:
    assert result.exit_code == 0, result.stderr
    document = result.json()
    assert set(document) == {"command", "item"}
    # The envelope's command names the command path (dotted in 0.21's envelope).
    assert document["command"].replace(" ", ".").replace("-", "_") == command
    item: dict[str, Any] = document["item"]
    return item


def _replay(source: str, **kwargs: Any) -> str:
    submission = KitaruClient().executions.replay(source, **kwargs)
    (row,) = submission.results
    return str(row.replay_exec_id)


def test_statistics_json_and_text(cli: Invoke, flows: Flows) -> None:
    run_ok(flows, x=1)
    run_ok(flows, x=2)
    run_failing(flows)

    item = _item(
        cli(
            "executions", "statistics", "--group-by", "status", "--group-by", "flow",
            "--metric", "steps:step_count:sum", "-o", "json",
        ),
        "executions.statistics",
    )  # fmt: skip
    assert list(item) == ["groups", "truncated", "group_count"]
    assert item["truncated"] is False
    assert item["group_count"] == 2
    first, second = item["groups"]
    assert first["keys"]["status"] == "completed"
    assert first["keys"]["flow_id"].endswith(":simple")
    assert first["execution_count"] == 2
    assert first["metrics"] == {"steps": 2.0}
    assert second["keys"]["status"] == "failed"
    assert second["metrics"] == {"steps": 2.0}  # fetch, then think failed

    text = cli("executions", "statistics", "--group-by", "status", "--metric", "n:step_count:avg")
    assert text.exit_code == 0, text.stderr
    completed_line = next(line for line in text.stdout.splitlines() if "completed" in line)
    assert "2" in completed_line
    assert "2 of 2 groups" in text.stdout

    paged = _item(
        cli("executions", "statistics", "--group-by", "status", "--size", "1", "--page", "2",
            "-o", "json"),
        "executions.statistics",
    )  # fmt: skip
    assert [g["keys"] for g in paged["groups"]] == [{"status": "failed"}]
    assert paged["group_count"] == 2

    only = _item(
        cli("executions", "statistics", "--status", "failed", "--flow", "agent", "-o", "json"),
        "executions.statistics",
    )
    assert [g["execution_count"] for g in only["groups"]] == [1]
    cut = _item(
        cli("executions", "statistics", "--group-by", "status", "--max-groups", "1", "-o", "json"),
        "executions.statistics",
    )
    assert cut["truncated"] is True
    assert len(cut["groups"]) == 1


def test_statistics_tag_filter_and_errors(cli: Invoke, flows: Flows) -> None:
    source = run_ok(flows, x=1)
    _replay(source, at="steady", tag="nightly")
    item = _item(
        cli("executions", "statistics", "--tag", "nightly", "--group-by", "tag", "-o", "json"),
        "executions.statistics",
    )
    assert [(g["keys"], g["execution_count"]) for g in item["groups"]] == [({"tag": "nightly"}, 1)]

    bad = cli("executions", "statistics", "--group-by", "colour")
    assert bad.exit_code == 1
    assert_one_error_line(bad.stderr, "colour", "time:<hour|day|week|month>")
    error = cli("executions", "statistics", "--metric", "x:duration:median", "-o", "json")
    assert error.exit_code == 1
    assert error.error_json()["error"]["type"] == "KitaruUsageError"
    too_many = cli("executions", "statistics", "--max-groups", "0")
    assert too_many.exit_code == 1
    assert_one_error_line(too_many.stderr, "max_groups")


def test_diff_json_and_text(cli: Invoke, flows: Flows) -> None:
    source = run_ok(flows, x=1)  # steady 2, result 3
    replay = _replay(source, at="steady", checkpoint_overrides={"steady": {"output": 40}})

    item = _item(cli("executions", "diff", source, "-o", "json"), "executions.diff")
    assert list(item) == DIFF_KEYS
    assert item["original_exec_id"] == source
    assert item["warnings"] == []
    ((compared),) = item["compared"]
    assert compared["replay_exec_id"] == replay
    ((steady),) = compared["checkpoints"]
    assert steady["name"] == "steady"
    assert steady["original_call_id"] == "steady"
    assert steady["replay_call_id"] == "steady"
    assert steady["status_match"] is True
    hashes = steady["artifact_hashes"]["output"]
    assert set(hashes) == {"original", "replay"}
    assert hashes["original"] != hashes["replay"]
    for key in ("duration_delta_ms", "token_delta", "cost_delta_usd"):
        assert key in steady

    explicit = _item(cli("executions", "diff", source, replay, "-o", "json"), "executions.diff")
    assert [c["replay_exec_id"] for c in explicit["compared"]] == [replay]

    text = cli("executions", "diff", source)
    assert text.exit_code == 0, text.stderr
    assert source in text.stdout
    assert replay in text.stdout
    steady_line = next(line for line in text.stdout.splitlines() if "│ steady" in line)
    assert "changed: output" in steady_line

    lonely = run_ok(flows, x=5)
    warned = cli("executions", "diff", lonely)
    assert warned.exit_code == 0
    assert "has no replays" in warned.stdout

    missing = cli("executions", "diff", "00000000-0000-0000-0000-000000000000")
    assert missing.exit_code == 1
    assert_one_error_line(missing.stderr, "00000000-0000-0000-0000-000000000000")


def test_diff_matrix_json_and_text(cli: Invoke, flows: Flows) -> None:
    a, b = run_ok(flows, x=1), run_ok(flows, x=2)
    item = _item(cli("executions", "diff-matrix", a, b, "-o", "json"), "executions.diff_matrix")
    assert list(item) == ["rows"]
    assert [row["original_exec_id"] for row in item["rows"]] == [a, b]
    assert [list(row) for row in item["rows"]] == [DIFF_KEYS, DIFF_KEYS]
    assert item["rows"][0]["compared"][0]["replay_exec_id"] == b

    text = cli("executions", "diff-matrix", a, b)
    assert text.exit_code == 0, text.stderr
    row_a = next(line for line in text.stdout.splitlines() if line.startswith(f"│ {a[:8]}"))
    assert "1" in row_a  # steady differs (x=1 vs x=2)

    no_ids = cli("executions", "diff-matrix")
    assert no_ids.exit_code != 0
    assert "Traceback" not in no_ids.stderr


def test_cohort_json_and_text(cli: Invoke, flows: Flows) -> None:
    first, second = run_ok(flows, x=1), run_ok(flows, x=2)
    (flows.state / "think-failed-once").unlink(missing_ok=True)
    failed = run_failing(flows)  # agent: fetch completed, think failed
    _replay(first, at="steady")  # not an original: never in a cohort

    item = _item(
        cli("executions", "cohort", "--flow", "simple", "--at", "steady", "-o", "json"),
        "executions.cohort",
    )
    assert list(item) == [
        "exec_ids", "flow", "at", "deployment", "deployment_version", "order_by",
        "scanned", "matched", "partial", "filtered", "ranked",
    ]  # fmt: skip
    assert item["exec_ids"] == [second, first]
    assert item["scanned"] == 3
    assert item["matched"] == 2

    oldest = _item(
        cli("executions", "cohort", "--flow", "simple", "--at", "steady", "--order-by",
            "started_at", "--limit", "1", "--max-scan", "10", "-o", "json"),
        "executions.cohort",
    )  # fmt: skip
    assert oldest["exec_ids"] == [first]

    completed_only = _item(
        cli("executions", "cohort", "--flow", "agent", "--at", "fetch", "-o", "json"),
        "executions.cohort",
    )
    assert completed_only["exec_ids"] == []
    with_failed = _item(
        cli("executions", "cohort", "--flow", "agent", "--at", "fetch", "--include-failed",
            "-o", "json"),
        "executions.cohort",
    )  # fmt: skip
    assert with_failed["exec_ids"] == [failed]

    text = cli(
        "executions", "cohort", "--flow", "simple", "--at", "steady", "--since", "2000-01-01"
    )
    assert text.exit_code == 0, text.stderr
    assert text.stdout.splitlines()[:2] == [second, first]
    assert "2 of 2 matching executions" in text.stdout

    bad = cli("executions", "cohort", "--flow", "simple", "--at", "steady", "--order-by", "cost")
    assert bad.exit_code == 1
    assert_one_error_line(bad.stderr, "order_by")
    no_at = cli("executions", "cohort", "--flow", "simple")
    assert no_at.exit_code != 0
    assert "--at" in no_at.stderr
