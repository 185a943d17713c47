"""kitaru executions replay: Kitaru 0.21's options, the older ones, and a clean JSON stdout."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kitaru.client import KitaruClient
from tests.cli.conftest import Flows, Invoke
from tests.cli.test_executions import assert_one_error_line, run_ok

SUBMISSION_KEYS = [
    "submission_id",
    "tag",
    "at",
    "wait",
    "plan",
    "results",
    "failures",
    "skipped",
    "summary",
    "compare_url",
]


def test_replay_with_override_text_and_json(cli: Invoke, flows: Flows) -> None:
    (flows.state / "think-failed-once").write_text("x")  # think succeeds from the start
    source = run_ok(flows, name="agent", x=1)  # fetch 2, think 20, finish {"answer": 20}

    result = cli("executions", "replay", source, "--at", "finish", "--override", "think=7")
    assert result.exit_code == 0, result.stderr
    assert "Replay of" in result.stdout
    think_line = next(line for line in result.stdout.splitlines() if "│ think" in line)
    assert "reused" in think_line
    assert "overridden" in think_line

    document = cli(
        "executions", "replay", source, "--at", "think", "--override", "fetch=5", "-o", "json"
    ).json()
    assert document["command"] == "executions.replay"
    item = document["item"]
    assert list(item) == SUBMISSION_KEYS
    assert item["wait"] is True
    (row,) = item["results"]
    assert row["original_exec_id"] == source
    assert row["status"] == "completed"
    replayed = KitaruClient().executions.get(row["replay_exec_id"])
    assert replayed.original_exec_id == source
    output = replayed.checkpoints[-1].output
    assert output is not None
    assert output.load() == {"answer": 50}
    source_output = KitaruClient().executions.get(source).checkpoints[-1].output
    assert source_output is not None
    assert source_output.load() == {"answer": 20}


def test_replay_with_flow_input(cli: Invoke, flows: Flows) -> None:
    source = run_ok(flows, name="simple", x=1)
    for option in (["--input", "x=21"], ["--flow-overrides", '{"x": "21"}']):
        document = cli(
            "executions", "replay", source, "--at", "steady", *option, "-o", "json"
        ).json()
        new_id = document["item"]["results"][0]["replay_exec_id"]
        output = KitaruClient().executions.get(new_id).checkpoints[0].output
        assert output is not None
        assert output.load() == 42


def test_replay_of_several_ids_with_0_21_options(cli: Invoke, flows: Flows, tmp_path: Path) -> None:
    (flows.state / "think-failed-once").write_text("x")
    first, second = run_ok(flows, name="agent", x=1), run_ok(flows, name="agent", x=2)
    other = run_ok(flows, name="simple", x=1)  # has no `think`: skipped
    ids_file = tmp_path / "ids.json"
    ids_file.write_text(json.dumps({"exec_ids": [second, other, "no-such-id"]}))
    result = cli(
        "executions",
        "replay",
        first,
        "--ids-file",
        str(ids_file),
        "--at",
        "think",
        "--checkpoint-overrides",
        '{"fetch": {"output": 100}}',
        "--invocation-overrides",
        '{"think": {"input": 3}}',
        "--skip",
        "finish",
        "--tag",
        "nightly",
        "--on-error",
        "collect",
        "-o",
        "json",
    )
    # One source failed (unknown id): collected in the result, which the command printed
    # whole, so it exits 0 (a failing command would print only an error, on stderr).
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    item = result.json()["item"]
    assert item["wait"] is False  # several ids: submitted without waiting
    assert item["tag"] == "nightly"
    assert [r["original_exec_ref"] for r in item["results"]] == [first, second]
    assert {r["status"] for r in item["results"]} == {"submitted"}
    assert [s["original_exec_ref"] for s in item["skipped"]] == [other]
    assert [f["original_exec_ref"] for f in item["failures"]] == ["no-such-id"]
    assert item["summary"] == {"submitted": 2, "completed": 0, "failed": 1, "skipped": 1}
    assert item["plan"]["skip"] == ["finish"]
    assert item["plan"]["matched_targets"] == {
        "checkpoint:fetch": ["fetch"],
        "invocation:think": ["think"],
        "skip:finish": ["finish"],
    }
    client = KitaruClient()
    for row, answer in zip(item["results"], (20, 30), strict=True):
        # The command ran the replays to their end before exiting; finish was skipped.
        replay = client.executions.get(row["replay_exec_id"])
        assert replay.status.value == "completed"
        assert replay.metadata["replay_tag"] == "nightly"
        assert [c.artifacts[0].load() for c in replay.checkpoints] == [100, 30, {"answer": answer}]

    waited = cli("executions", "replay", first, second, "--at", "finish", "--wait", "-o", "json")
    assert waited.exit_code == 0, waited.stderr
    assert {r["status"] for r in waited.json()["item"]["results"]} == {"completed"}


def test_replay_errors(cli: Invoke, flows: Flows) -> None:
    source = run_ok(flows, name="simple")
    unknown = cli("executions", "replay", source, "--at", "nope")
    assert unknown.exit_code == 1
    assert_one_error_line(unknown.stderr, "'nope'", "Available checkpoints")
    # The contract's type (as through a server), not the internal subclass raised.
    as_json = cli("executions", "replay", source, "--at", "nope", "-o", "json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stderr)["error"]["type"] == "KitaruStateError"

    bad_key = cli("executions", "replay", source, "--at", "steady", "--override", "ghost=1")
    assert bad_key.exit_code == 1
    assert_one_error_line(bad_key.stderr, "'ghost'")

    not_fitting = cli("executions", "replay", source, "--at", "steady", "--input", 'x="abc"')
    assert not_fitting.exit_code == 1
    assert_one_error_line(not_fitting.stderr, "flow_overrides['x']", "int")

    bad_entry = cli(
        "executions", "replay", source, "--at", "steady", "--checkpoint-overrides", '{"steady": 1}'
    )
    assert bad_entry.exit_code == 1
    assert_one_error_line(bad_entry.stderr, "mapping")

    for args, needle in [
        (["--override", "steady=abc"], "not valid JSON"),
        (["--input", "x"], "NAME=JSON"),
        (["--flow-overrides", "[1]"], "JSON object"),
        (["--on-error", "maybe"], "--on-error"),
    ]:
        refused = cli("executions", "replay", source, "--at", "steady", *args)
        assert refused.exit_code != 0
        assert_one_error_line(refused.stderr, needle)

    missing_at = cli("executions", "replay", source)
    assert missing_at.exit_code != 0
    assert "--at" in missing_at.stderr

    # Nothing was created by the refused replays.
    assert cli("executions", "list", "-o", "json").json()["count"] == 1


PRINTING_FLOW = """\
from kitaru import checkpoint, flow


@checkpoint
def shout(x: int) -> int:
    print("checkpoint says hello", x)
    return x * 2


@flow
def noisy(x: int = 1) -> int:
    print("flow body says hello")
    return shout(x) + 1
"""


@pytest.fixture
def noisy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    code_dir = tmp_path / "noisy_code"
    code_dir.mkdir()
    name = f"noisy_{uuid.uuid4().hex[:10]}"
    (code_dir / f"{name}.py").write_text(textwrap.dedent(PRINTING_FLOW), encoding="utf-8")
    sys.path.insert(0, str(code_dir))
    monkeypatch.setenv("PYTHONPATH", str(code_dir))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(code_dir))
        sys.modules.pop(name, None)


def _check_clean_json(stdout: str, stderr: str, *, waited: bool) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(stdout)  # nothing but the JSON document
    assert "says hello" not in stdout
    assert "flow body says hello" in stderr
    assert "checkpoint says hello 1" in stderr
    row = document["item"]["results"][0]
    assert row["status"] == ("completed" if waited else "submitted")
    return document


def test_json_stdout_holds_only_json_while_the_replayed_flow_prints(
    cli: Invoke, kitaru_proc: Invoke, noisy: ModuleType
) -> None:
    handle = noisy.noisy.run(1)
    assert handle.wait(timeout=30) == 3
    source = handle.exec_id

    in_process = cli("executions", "replay", source, "--at", "shout", "-o", "json")
    assert in_process.exit_code == 0, in_process.stderr
    _check_clean_json(in_process.stdout, in_process.stderr, waited=True)

    for wait_option, waited in (("--wait", True), ("--no-wait", False)):
        proc = kitaru_proc(
            "executions", "replay", source, "--at", "shout", wait_option, "-o", "json"
        )
        assert proc.exit_code == 0, proc.stderr
        document = _check_clean_json(proc.stdout, proc.stderr, waited=waited)
        replay_id = document["item"]["results"][0]["replay_exec_id"]
        replay = KitaruClient().executions.get(replay_id)
        assert replay.status.value == "completed"
        # The lines are still captured as the execution's stdout.
        logs = KitaruClient().executions.logs(replay_id, source=None)
        assert any(entry.message == "checkpoint says hello 1" for entry in logs), [
            e.to_dict() for e in logs
        ]
