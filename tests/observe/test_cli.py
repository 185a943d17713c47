"""kitaru executions logs (incl. --follow on a running flow) and kitaru artifacts list|show."""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import kitaru
from kitaru import checkpoint, flow
from kitaru.cli import _logs
from tests.observe.conftest import RUN_OBS_FLOW, Invoke, child_env, start_child, wait_for

log = logging.getLogger("tests.observe.cli")


def assert_one_error_line(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# --- flows ----------------------------------------------------------------------------------


@checkpoint
def talk(x: int) -> int:
    print(f"talk says {x}")
    log.warning("talk warns %s", x)
    kitaru.save("talk-note", {"x": x}, type="response", tags=["cli"])
    return x


@flow
def talking(x: int) -> int:
    print("body line")
    first = talk(x)
    second = talk(x + 1)
    return first + second


def _run_talking(x: int = 1) -> str:
    handle = talking.run(x)
    handle.wait(timeout=30)
    return str(handle.exec_id)


# --- executions logs --------------------------------------------------------------------------


def test_logs_table_shows_time_call_stream_and_message(cli: Invoke) -> None:
    exec_id = _run_talking()
    result = cli("executions", "logs", exec_id)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert lines[0].endswith("(flow)        stdout   body line")
    assert lines[1].endswith("talk          stdout   talk says 1")
    assert lines[2].endswith("talk          WARNING  tests.observe.cli: talk warns 1")
    assert lines[3].endswith("talk:2        stdout   talk says 2")
    for line in lines:
        date, clock = line.split()[:2]
        assert len(date) == 10
        assert date[4] == "-"
        assert len(clock) == 12
        assert clock[8] == "."


def test_logs_json_checkpoint_and_limit(cli: Invoke) -> None:
    exec_id = _run_talking(3)
    document = cli("executions", "logs", exec_id, "-o", "json").json()
    assert document["command"] == "executions.logs"
    assert document["count"] == 5 == len(document["items"])
    assert set(document) == {"command", "items", "count"}
    first = document["items"][0]
    # Null fields are dropped (as 0.21 prints them): the body's line has no call.
    assert {"message", "timestamp", "source", "id", "exec_id", "stream"} <= set(first)
    assert set(first) <= {
        # Kitaru 0.21's LogEntry fields ...
        "message",
        "level",
        "timestamp",
        "source",
        "checkpoint_name",
        "module",
        "filename",
        "lineno",
        # ... and ours.
        "id",
        "exec_id",
        "call_id",
        "stream",
        "logger",
    }
    assert "call_id" not in first
    assert None not in first.values()
    assert (first["stream"], first["message"]) == ("stdout", "body line")

    by_name = cli("executions", "logs", exec_id, "--checkpoint", "talk", "-o", "json").json()
    assert [i["call_id"] for i in by_name["items"]] == ["talk", "talk", "talk:2", "talk:2"]
    by_call = cli("executions", "logs", exec_id, "-c", "talk:2").stdout.splitlines()
    assert [line.split(None, 4)[-1] for line in by_call] == [
        "talk says 4",
        "tests.observe.cli: talk warns 4",
    ]
    limited = cli("executions", "logs", exec_id, "--limit", "2", "-o", "json").json()
    assert [i["message"] for i in limited["items"]] == ["body line", "talk says 3"]
    assert limited["count"] == 2


def test_logs_errors_are_one_line(cli: Invoke) -> None:
    missing = cli("executions", "logs", "no-such-id")
    assert missing.exit_code == 1
    assert_one_error_line(missing.stderr, "no-such-id")
    as_json = cli("executions", "logs", "no-such-id", "-o", "json").error_json()
    assert as_json["command"] == "executions.logs"
    assert as_json["error"]["type"] == "KitaruBackendError"

    exec_id = _run_talking(5)
    unknown = cli("executions", "logs", exec_id, "--checkpoint", "tlak")
    assert unknown.exit_code == 1
    assert_one_error_line(unknown.stderr, "'tlak'", "talk, talk:2")

    bad_limit = cli("executions", "logs", exec_id, "--limit", "0")
    assert bad_limit.exit_code == 1
    assert_one_error_line(bad_limit.stderr, "--limit")


@flow
def silent() -> int:
    return 1


def test_logs_of_a_silent_execution(cli: Invoke) -> None:
    handle = silent.run()
    handle.wait(timeout=30)
    result = cli("executions", "logs", handle.exec_id)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No captured lines" in result.stderr
    assert cli("executions", "logs", handle.exec_id, "-o", "json").json()["items"] == []


def test_follow_on_a_finished_execution_prints_everything_and_exits(cli: Invoke) -> None:
    exec_id = _run_talking(7)
    started = time.monotonic()
    result = cli("executions", "logs", exec_id, "--follow")
    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - started < _logs.DRAIN_SECONDS + 5
    assert len(result.stdout.splitlines()) == 5
    assert f"Execution {exec_id} completed." in result.stderr
    json_lines = cli("executions", "logs", exec_id, "-f", "-o", "json").stdout.splitlines()
    events = [json.loads(line) for line in json_lines]
    assert [e["event"] for e in events] == ["log"] * 5 + ["terminal"]
    assert [e["item"]["message"] for e in events[:2]] == ["body line", "talk says 7"]
    assert events[-1]["item"]["status"] == "completed"
    assert all(set(e) == {"command", "event", "item"} for e in events)
    assert all(e["command"] == "executions.logs" for e in events)


class _Reader:
    """Collects a child's stdout lines as they arrive."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def drain(self) -> list[str]:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is not None:
                self.lines.append(line)

    def wait_for_text(self, text: str, timeout: float = 30) -> None:
        wait_for(lambda: any(text in line for line in self.drain()), timeout=timeout, what=text)


def test_follow_streams_a_running_flow_until_it_finishes(any_store: str, state_dir: Path) -> None:
    env = child_env(state_dir)
    runner = start_child(["-c", RUN_OBS_FLOW, "followed", "3"], env=env)
    followers: list[subprocess.Popen[str]] = []
    try:
        wait_for(lambda: (state_dir / "started").exists(), what="the checkpoint to start")
        exec_id = (state_dir / "exec_id").read_text()
        cli_args = ["-m", "kitaru.cli", "executions", "logs", exec_id, "--follow"]
        table = start_child(cli_args, env=env)
        as_json = start_child([*cli_args, "-o", "json"], env=env)
        first_only = start_child([*cli_args, "--limit", "1", "-o", "json"], env=env)
        followers = [table, as_json, first_only]
        table_out, json_out = _Reader(table), _Reader(as_json)

        # Lines show while the checkpoint is still blocked.
        table_out.wait_for_text("step started 3")
        json_out.wait_for_text("step started 3")
        assert not (state_dir / "release").exists()
        assert table.poll() is None
        assert as_json.poll() is None
        assert first_only.poll() is None  # one line shown, but it follows to the end

        (state_dir / "release").write_text("x")
        assert table.wait(timeout=30) == 0
        assert as_json.wait(timeout=30) == 0
        first_out, _ = first_only.communicate(timeout=30)
        assert first_only.returncode == 0  # it completed
        limited = [json.loads(line) for line in first_out.splitlines()]
        assert [e["event"] for e in limited] == ["log", "terminal"]
        assert limited[0]["item"]["message"] == "body begins"
        assert limited[1]["item"]["status"] == "completed"
        assert runner.wait(timeout=30) == 0
        time.sleep(0.2)  # let the pumps read the last lines
        lines = table_out.drain()
        messages = [line.split(None, 4)[-1] for line in lines]
        assert messages == [
            "body begins",
            "step started 3",
            "step released",
            "obs.child: step warns",
            "body ends with 6",  # written just before the execution finished
        ]
        assert [line.split()[2] for line in lines] == [
            "(flow)",
            "slow_step",
            "slow_step",
            "slow_step",
            "(flow)",
        ]
        assert table.stderr is not None
        assert f"Execution {exec_id} completed." in table.stderr.read()
        events = [json.loads(line) for line in json_out.drain()]
        assert events[-1]["event"] == "terminal"
        items = events[:-1]
        assert [i["event"] for i in items] == ["log"] * 5
        assert [i["command"] for i in items] == ["executions.logs"] * 5
        assert [i["item"]["message"] for i in items] == [
            "body begins",
            "step started 3",
            "step released",
            "step warns",
            "body ends with 6",
        ]
        assert [i["item"].get("level") for i in items][3] == "WARNING"
        assert len({i["item"]["id"] for i in items}) == 5  # no line twice
    finally:
        (state_dir / "release").write_text("x")
        for proc in [runner, *followers]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


# --- artifacts list / show ------------------------------------------------------------------------


def test_artifacts_list_table_json_and_filters(cli: Invoke) -> None:
    exec_id = _run_talking(2)
    table = cli("artifacts", "list", exec_id)
    assert table.exit_code == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 6  # inputs, 2 saves, 2 outputs, result
    assert any("talk-note" in r and "response" in r and "cli" in r and "talk:2" in r for r in rows)

    document = cli("artifacts", "list", exec_id, "-o", "json").json()
    assert document["command"] == "artifacts.list"
    assert document["count"] == 6
    assert [i["role"] for i in document["items"]] == [
        "flow_inputs",
        "saved",
        "output",
        "saved",
        "output",
        "flow_result",
    ]
    saved = cli("artifacts", "list", exec_id, "--type", "response", "-o", "json").json()
    assert [(i["name"], i["call_id"], i["tags"]) for i in saved["items"]] == [
        ("talk-note", "talk", ["cli"]),
        ("talk-note", "talk:2", ["cli"]),
    ]
    outputs = cli("artifacts", "list", exec_id, "--kind", "output", "-o", "json").json()
    assert [i["call_id"] for i in outputs["items"]] == ["talk", "talk:2"]
    named = cli("artifacts", "list", exec_id, "--name", "result", "-o", "json").json()
    assert [i["role"] for i in named["items"]] == ["flow_result"]
    none = cli("artifacts", "list", exec_id, "--type", "prompt")
    assert none.exit_code == 0
    assert "No artifacts match" in none.stdout

    bad_type = cli("artifacts", "list", exec_id, "--type", "picture")
    assert bad_type.exit_code == 1
    assert_one_error_line(bad_type.stderr, "--type", "prompt")
    missing = cli("artifacts", "list", "no-such-id", "-o", "json")
    assert missing.exit_code == 1
    assert missing.error_json()["error"]["type"] == "KitaruBackendError"


def test_artifacts_show_with_and_without_value(cli: Invoke) -> None:
    exec_id = _run_talking(4)
    items = cli("artifacts", "list", exec_id, "--type", "response", "-o", "json").json()["items"]
    artifact_id = items[0]["artifact_id"]

    plain = cli("artifacts", "show", artifact_id)
    assert plain.exit_code == 0, plain.stderr
    for text in (artifact_id, "talk-note", "saved", "response", exec_id, "cli", "inline"):
        assert text in plain.stdout
    assert "Value" not in plain.stdout

    with_value = cli("artifacts", "show", artifact_id, "--value")
    assert with_value.exit_code == 0, with_value.stderr
    assert "Value (dict)" in with_value.stdout
    assert '"x": 4' in with_value.stdout

    item = cli("artifacts", "show", artifact_id, "--value", "-o", "json").json()["item"]
    assert item["artifact_id"] == artifact_id
    assert item["value"] == {"x": 4}
    assert item["value_type"] == "dict"
    assert item["value_exact"] is True
    assert "value" not in cli("artifacts", "show", artifact_id, "-o", "json").json()["item"]

    missing = cli("artifacts", "show", "no-such-artifact")
    assert missing.exit_code == 1
    assert_one_error_line(missing.stderr, "no-such-artifact")


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


@checkpoint
def odd_values() -> int:
    kitaru.save("point", Point(1, 2))
    kitaru.save("raw", b"\xff\x00", type="blob")
    kitaru.save("text-bytes", b"hello", type="blob")
    kitaru.save("opaque", Opaque())
    return 0


@flow
def odd_flow() -> int:
    return odd_values()


def test_artifacts_show_values_json_cannot_hold(cli: Invoke) -> None:
    handle = odd_flow.run()
    handle.wait(timeout=30)
    ids = {
        i["name"]: i["artifact_id"]
        for i in cli("artifacts", "list", handle.exec_id, "--kind", "saved", "-o", "json").json()[
            "items"
        ]
    }

    def shown(name: str) -> dict[str, object]:
        result = cli("artifacts", "show", ids[name], "--value", "-o", "json")
        assert result.exit_code == 0, result.stdout
        item: dict[str, object] = result.json()["item"]
        return item

    point = shown("point")
    assert point["value"] == {"x": 1, "y": 2}
    assert str(point["value_type"]).endswith("Point")
    raw = shown("raw")
    assert (raw["value"], raw["value_exact"], raw["value_type"]) == ("/wA=", False, "bytes")
    assert shown("text-bytes")["value"] == "hello"
    opaque = shown("opaque")
    assert (opaque["value"], opaque["value_exact"]) == ("Opaque()", False)
    table = cli("artifacts", "show", ids["opaque"], "--value")
    assert "Opaque()" in table.stdout


def test_artifacts_show_value_of_a_class_not_importable_here(cli: Invoke, tmp_path: Path) -> None:
    module_dir = tmp_path / "private"
    module_dir.mkdir()
    (module_dir / "obs_private_mod.py").write_text(
        "class Secret:\n    def __init__(self):\n        self.v = 1\n"
    )
    sys.path.insert(0, str(module_dir))
    try:
        secret_cls = importlib.import_module("obs_private_mod").Secret

        @checkpoint
        def make_secret() -> object:
            return secret_cls()

        @flow
        def secret_flow() -> object:
            return make_secret()

        handle = secret_flow.run()
        handle.wait(timeout=30)
    finally:
        sys.path.remove(str(module_dir))
        sys.modules.pop("obs_private_mod", None)
    outputs = cli("artifacts", "list", handle.exec_id, "--kind", "output", "-o", "json").json()
    artifact_id = outputs["items"][0]["artifact_id"]
    assert cli("artifacts", "show", artifact_id).exit_code == 0  # metadata needs no import
    result = cli("artifacts", "show", artifact_id, "--value")
    assert result.exit_code == 1
    assert_one_error_line(result.stderr, artifact_id)


def test_help_lists_the_new_commands(cli: Invoke) -> None:
    assert "logs" in cli("executions", "--help").stdout
    top = cli("--help").stdout
    assert "artifacts" in top
    assert "show" in cli("artifacts", "--help").stdout


@pytest.mark.parametrize("follow", [False, True])
def test_logs_of_one_checkpoint_with_and_without_follow(cli: Invoke, follow: bool) -> None:
    exec_id = _run_talking(9)
    args = ["executions", "logs", exec_id, "-c", "talk"] + (["--follow"] if follow else [])
    result = cli(*args)
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 4
