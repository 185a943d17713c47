"""The ``kitaru`` CLI against Kitaru 0.21's contract (KITARU_CONTRACT.md §6).

Every command (found by walking the Typer app, so new ones are covered too) takes
``-o text|json``, prints the 0.21 envelope, and fails with exit 1 and a JSON error
on stderr with nothing on stdout. Where stdout purity matters the CLI runs as a
real process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from kitaru._version import __version__
from kitaru.cli import app
from kitaru.client import KitaruClient
from tests._cli import CliResult as Result
from tests._printed import printed_exec_id

# --- running the CLI ------------------------------------------------------------------


def cli(*args: str) -> Result:
    """``kitaru ARGS`` in this process."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def proc(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
    """``kitaru ARGS`` as a real process (no stdin, like CI)."""
    done = subprocess.run(
        [sys.executable, "-m", "kitaru.cli", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    return Result(done.returncode, done.stdout, done.stderr)


def eventually(check: Callable[[], Any], *, timeout: float = 60, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def leaf_commands() -> list[tuple[str, ...]]:
    """Every runnable command of the app, as its path (``("executions", "list")``)."""
    root = typer.main.get_command(app)
    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        commands = getattr(command, "commands", None)
        if isinstance(commands, dict) and commands:
            for name, sub in commands.items():
                walk(sub, (*path, name))
        else:
            found.append(path)

    walk(root, ())
    return sorted(found)


def dotted(path: tuple[str, ...]) -> str:
    """0.21's dotted name: groups as they are, the command's own ``-`` as ``_``
    (``log-store.show``, ``executions.diff_matrix``)."""
    return ".".join([*path[:-1], path[-1].replace("-", "_")])


COMMANDS = leaf_commands()


def assert_envelope(document: dict[str, Any], command: str) -> None:
    assert document["command"] == command
    if "items" in document:
        assert set(document) == {"command", "items", "count"}
        assert document["count"] == len(document["items"])
    else:
        assert set(document) == {"command", "item"}
        assert isinstance(document["item"], dict)


def assert_json_error(result: Result, command: str, error_type: str | None = None) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    document = result.error_json()
    assert set(document) == {"command", "error"}
    assert document["command"] == command
    assert set(document["error"]) == {"message", "type"}
    if error_type is not None:
        assert document["error"]["type"] == error_type, document
    assert "Traceback" not in result.stderr
    message: str = document["error"]["message"]
    return message


# --- every command: -o, help, the error envelope -----------------------------------------


def test_the_walk_finds_the_commands() -> None:
    names = {dotted(p) for p in COMMANDS}
    assert {
        "init",
        "status",
        "info",
        "worker",
        "clean.project",
        "clean.global",
        "clean.all",
        "executions.list",
        "executions.get",
        "executions.logs",
        "executions.input",
        "executions.resume",
        "executions.retry",
        "executions.replay",
        "executions.cancel",
        "stack.list",
        "stack.current",
    } <= names


@pytest.mark.parametrize("path", COMMANDS, ids=dotted)
def test_every_command_help_takes_output_and_renders_as_written(path: tuple[str, ...]) -> None:
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.stderr
    assert "-o, --output [text|json]" in result.stdout
    assert "<bool>" not in result.stdout  # no type label on flags
    assert cli(*path, "-h").stdout == result.stdout


def test_status_help_keeps_brackets() -> None:
    result = cli("status", "--help")
    assert "[tool.kitaru]" in result.stdout
    root = proc("--help")
    assert root.exit_code == 0
    assert "<bool>" not in root.stdout


@pytest.mark.parametrize("path", COMMANDS, ids=dotted)
def test_every_command_parse_error_is_a_json_error_exit_1(path: tuple[str, ...]) -> None:
    result = cli(*path, "--no-such-option", "-o", "json")
    message = assert_json_error(result, dotted(path), "UsageError")
    assert "--no-such-option" in message
    text = cli(*path, "--no-such-option")
    assert text.exit_code == 1
    assert text.stdout == ""
    assert text.stderr.startswith("Error: ")
    assert len(text.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("path", COMMANDS, ids=dotted)
def test_every_command_refuses_an_unknown_output_format(path: tuple[str, ...]) -> None:
    result = cli(*path, "-o", "yaml")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "'yaml' is not one of 'text', 'json'" in result.stderr


#: A runtime failure (a Kitaru error, not a parse error) of each command we know.
FAILURES: dict[str, tuple[list[str], str]] = {
    "init": (["{tmp}/missing-dir"], "KitaruUsageError"),
    "info": (["--file", "{tmp}/missing-dir/info.json"], "KitaruUsageError"),
    "clean.project": (["--yes"], "KitaruUsageError"),  # no project here
    "clean.global": ([], "KitaruUsageError"),  # no terminal, no --yes
    "clean.all": ([], "KitaruUsageError"),
    "executions.get": (["no-such-id"], ""),
    "executions.logs": (["no-such-id"], ""),
    "executions.input": (["no-such-id", "--value", "1"], ""),
    "executions.resume": (["no-such-id"], ""),
    "executions.retry": (["no-such-id"], ""),
    "executions.cancel": (["no-such-id"], ""),
    "executions.delete": (["no-such-id", "--yes"], ""),
    "executions.waits": (["no-such-id"], ""),
    "executions.replay": (["no-such-id", "--at", "x"], ""),
    "executions.list": (["--limit", "2", "--page", "1"], "UsageError"),
    "artifacts.list": (["no-such-id"], ""),
    "artifacts.show": (["no-such-artifact"], ""),
    "stack.show": (["no-such-stack"], ""),
    "stack.use": (["no-such-stack"], ""),
    "stack.delete": (["no-such-stack"], ""),
}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_runtime_failures_are_json_errors_on_stderr(
    name: str, tmp_path: Path, kitaru_home: Path
) -> None:
    (kitaru_home / "artifacts").mkdir(parents=True, exist_ok=True)  # state to clean
    path = next((p for p in COMMANDS if dotted(p) == name), None)
    assert path is not None, f"no command {name}"
    args, error_type = FAILURES[name]
    args = [a.format(tmp=tmp_path) for a in args]
    result = cli(*path, *args, "-o", "json")
    assert_json_error(result, name, error_type or None)
    text = cli(*path, *args)
    assert text.exit_code == 1
    assert text.stdout == ""
    assert text.stderr.startswith("Error: ")


#: Cheap successful runs: (args, JSON shape).
SUCCESSES: list[tuple[list[str], str]] = [
    (["status"], "status"),
    (["info"], "info"),
    (["stack", "list"], "stack.list"),
    (["stack", "current"], "stack.current"),
    (["stack", "show", "local"], "stack.show"),
    (["executions", "list"], "executions.list"),
    (["executions", "waits"], "executions.waits"),
    (["clean", "global", "--dry-run"], "clean.global"),
    (["worker", "--once"], "worker"),
]


@pytest.mark.parametrize(
    ("args", "name"), SUCCESSES, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_success_envelopes(args: list[str], name: str) -> None:
    result = cli(*args, "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert_envelope(result.json(), name)
    # The old name of text output still works, and text is the default.
    assert cli(*args, "-o", "table").stdout == cli(*args).stdout == cli(*args, "-o", "TEXT").stdout


def test_bare_kitaru_help_and_version() -> None:
    bare = proc()
    assert bare.exit_code == 0
    assert "Usage:" in bare.stdout
    assert "executions" in bare.stdout
    for flag in ("--help", "-h"):
        helped = proc(flag)
        assert helped.exit_code == 0
        assert helped.stdout == bare.stdout
    for flag in ("--version", "-V"):
        version = proc(flag)
        assert version.exit_code == 0
        assert version.stdout.strip() == f"kitaru {__version__}"
    group = cli("executions")
    assert group.exit_code == 0
    assert "Usage:" in group.stdout


def test_usage_errors_exit_1_without_traceback() -> None:
    for args in (
        ["no-such-command"],
        ["executions", "get"],  # missing argument
        ["executions", "list", "--page", "zero"],  # bad value
        ["executions", "list", "--status", "sleeping"],
    ):
        result = proc(*args, "-o", "json")
        assert result.exit_code == 1, args
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        assert json.loads(result.stderr)["error"]["type"] == "UsageError"
        plain = proc(*args)
        assert plain.exit_code == 1
        assert plain.stderr.startswith("Error: ")
        assert "Traceback" not in plain.stderr


# --- pagination -------------------------------------------------------------------------


def test_pagination_on_list_commands(tmp_path: Path) -> None:
    for args in (["stack", "list"], ["executions", "list"], ["executions", "waits"]):
        past = cli(*args, "--page", "99", "--size", "5", "-o", "json")
        assert past.exit_code == 0, past.stderr
        assert past.json()["items"] == []
        assert past.json()["count"] == 0
        for bad in (["--page", "0"], ["--size", "0"], ["--page", "-1"]):
            refused = cli(*args, *bad, "-o", "json")
            assert refused.exit_code == 1, (args, bad)
            assert refused.stdout == ""
    first = cli("stack", "list", "--page", "1", "--size", "1", "-o", "json").json()
    assert [s["name"] for s in first["items"]] == ["local"]
    assert set(first["items"][0]) >= {"id", "name", "is_active", "is_managed"}


# --- init, info, clean ------------------------------------------------------------------


def test_info_snapshot_packages_and_file(tmp_path: Path) -> None:
    result = cli("info", "-o", "json")
    assert result.exit_code == 0, result.stderr
    item = result.json()["item"]
    assert item["sdk_version"] == __version__
    assert {"connection", "config_directory", "active_stack", "packages"} <= set(item)
    assert item["active_stack"]["name"] == "local"
    assert item["packages"]["kitaru"] == __version__
    only = cli("info", "-p", "typer", "--packages", "no-such-package-xyz", "-o", "json").json()
    assert set(only["item"]["packages"]) == {"typer", "no-such-package-xyz"}
    assert only["item"]["packages"]["no-such-package-xyz"] is None
    for flag in ("--all", "-a", "--all-packages"):
        every = cli("info", flag, "-o", "json").json()["item"]["packages"]
        assert "pytest" in every
    target = tmp_path / "snapshot.json"
    written = cli("info", "-f", str(target))
    assert written.exit_code == 0, written.stderr
    assert json.loads(target.read_text())["sdk_version"] == __version__


def test_clean_refuses_without_yes_and_deletes_only_kitaru_state(
    kitaru_home: Path, tmp_path: Path
) -> None:
    # Kitaru's state in the (temporary) config directory, plus a file that is not ours.
    from kitaru import checkpoint, flow

    @checkpoint
    def one() -> int:
        return 1

    @flow
    def tiny() -> int:
        return one()

    tiny.run().wait(timeout=60)
    assert (kitaru_home / "kitaru.db").exists()
    stranger = kitaru_home / "not-kitaru.txt"
    stranger.write_text("keep me")

    dry = cli("clean", "global", "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.stderr
    item = dry.json()["item"]
    assert item["scope"] == "global"
    assert item["dry_run"] is True
    assert item["aborted"] is False
    assert item["deleted_paths"] == []
    assert str(kitaru_home / "kitaru.db") in item["planned_paths"]
    assert (kitaru_home / "kitaru.db").exists()

    refused = proc("clean", "global", "-o", "json")  # no terminal, no --yes
    assert "--yes" in assert_json_error(refused, "clean.global", "KitaruUsageError")
    assert (kitaru_home / "kitaru.db").exists()

    done = cli("clean", "global", "--yes", "-o", "json")
    assert done.exit_code == 0, done.stderr
    deleted = done.json()["item"]["deleted_paths"]
    assert str(kitaru_home / "kitaru.db") in deleted
    assert not (kitaru_home / "kitaru.db").exists()
    assert stranger.read_text() == "keep me"
    assert not any(p.name.startswith("kitaru.db") for p in kitaru_home.iterdir())


def test_clean_project_and_all(kitaru_home: Path) -> None:
    assert cli("init").exit_code == 0
    marker = Path.cwd() / ".kitaru"
    assert marker.is_dir()
    (Path.cwd() / "sub").mkdir()
    os.chdir(Path.cwd() / "sub")  # the project is found from a subdirectory too
    try:
        result = cli("clean", "project", "-y", "-o", "json")
    finally:
        os.chdir(marker.parent)
    assert result.exit_code == 0, result.stderr
    document = result.json()
    assert document["command"] == "clean.project"
    assert document["item"]["deleted_paths"] == [str(marker)]
    assert not marker.exists()
    assert cli("init").exit_code == 0
    every = cli("clean", "all", "-y", "-o", "json")
    assert every.exit_code == 0, every.stderr
    assert every.json()["command"] == "clean.all"
    assert str(marker) in every.json()["item"]["deleted_paths"]


def test_clean_global_refuses_a_store_with_live_executions_without_force(
    kitaru_home: Path,
) -> None:
    from kitaru import flow, wait

    @flow
    def held() -> None:
        wait(name="hold", timeout=0)

    handle = held.run()
    eventually(
        lambda: KitaruClient().executions.get(handle.exec_id).status.value == "waiting",
        what="the execution to wait",
    )
    refused = cli("clean", "global", "-y", "-o", "json")
    assert "running or waiting" in assert_json_error(refused, "clean.global", "KitaruStateError")
    assert (kitaru_home / "kitaru.db").exists()
    KitaruClient().executions.cancel(handle.exec_id)
    forced = cli("clean", "global", "-y", "--force", "-o", "json")
    assert forced.exit_code == 0, forced.stderr
    assert not (kitaru_home / "kitaru.db").exists()


# --- flows run by the CLI: stdout holds the JSON document only ------------------------------

FLOWS_SOURCE = """\
import json
import os
import sys
from pathlib import Path

import kitaru
from kitaru import checkpoint, flow

STATE = Path({state!r})


@checkpoint
def noisy(x: int) -> int:
    print(f"NOISY-PRINT {{x}}")
    marker = STATE / "noisy-failed"
    if not marker.exists():
        marker.write_text("x")
        raise ValueError("fails the first time")
    return x + 1


@flow(cache=False)
def retryable(x: int = 1) -> int:
    print("BODY-PRINT")
    return noisy(x)


@checkpoint
def crash_noisy(x: int) -> int:
    # With its execution id: the process may die before the main thread prints it.
    print(f"CRASH-PRINT {{x}} {{kitaru.current_execution_id()}}")
    marker = STATE / "crashed"
    if not marker.exists():
        marker.write_text("x")
        sys.stdout.flush()
        os.kill(os.getpid(), 9)
    return x


@flow(cache=False)
def crashing(x: int = 1) -> int:
    return crash_noisy(x)


@checkpoint
def after_answer(ok: bool) -> str:
    print(f"AFTER-ANSWER {{ok}}")
    return "yes" if ok else "no"


@flow(cache=False)
def approval(timeout: float = 0.0) -> str:
    ok = kitaru.wait(schema=bool, name="approve", question="Go?", timeout=timeout)
    return after_answer(ok)


@checkpoint
def talk(x: int) -> int:
    print(f"talk {{x}}")
    return x


@flow(cache=False)
def talker(x: int = 1) -> int:
    print("body line")
    return talk(x)


if __name__ == "__main__":
    handle = globals()[sys.argv[1]].run(json.loads(sys.argv[2]))
    print(handle.exec_id, flush=True)
    handle.wait()
"""


@dataclass
class Flows:
    path: Path
    state: Path
    module: Any

    def start(self, name: str, arg: Any, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(self.path), name, json.dumps(arg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **env},
        )


@pytest.fixture
def flows(tmp_path: Path) -> Iterator[Flows]:
    import importlib

    state = tmp_path / "state"
    state.mkdir()
    code = tmp_path / "code"
    code.mkdir()
    name = f"contract_flows_{uuid.uuid4().hex[:10]}"
    path = code / f"{name}.py"
    path.write_text(textwrap.dedent(FLOWS_SOURCE.format(state=str(state))), encoding="utf-8")
    sys.path.insert(0, str(code))
    try:
        yield Flows(path=path, state=state, module=importlib.import_module(name))
    finally:
        sys.path.remove(str(code))
        sys.modules.pop(name, None)


def _released(exec_id: str) -> bool:
    execution = KitaruClient().executions.get(exec_id)
    return execution.status.value == "waiting" and execution.lease_owner is None


def _wait_pending(exec_id: str) -> None:
    eventually(lambda: KitaruClient().executions.pending_waits(exec_id), what="the wait")


def _log_messages(exec_id: str) -> list[str]:
    return [e.message for e in KitaruClient().executions.logs(exec_id, source=None)]


def test_retry_json_stdout_is_only_the_document(any_store: str, flows: Flows) -> None:
    handle = flows.module.retryable.run(1)
    eventually(
        lambda: KitaruClient().executions.get(handle.exec_id).status.is_finished,
        what="the first run to fail",
    )
    result = proc("executions", "retry", handle.exec_id, "-o", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)  # nothing but the document
    assert_envelope(document, "executions.retry")
    assert document["item"]["status"] == "completed"
    assert "NOISY-PRINT 1" in result.stderr  # the flow's output went to stderr
    assert "BODY-PRINT" in result.stderr
    assert _log_messages(handle.exec_id).count("NOISY-PRINT 1") == 2  # and was captured


def test_resume_json_stdout_is_only_the_document(
    any_store: str, flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_LEASE_SECONDS", "0.5")
    runner = flows.start("crashing", 1)
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == -signal.SIGKILL, err
    exec_id = printed_exec_id(out)
    eventually(
        lambda: KitaruClient().executions.get(exec_id).is_orphaned, what="the lease to expire"
    )
    result = proc("executions", "resume", "--exec-id", exec_id, "-o", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert_envelope(document, "executions.resume")
    assert document["item"]["status"] == "completed"
    assert f"CRASH-PRINT 1 {exec_id}" in result.stderr
    assert f"CRASH-PRINT 1 {exec_id}" in _log_messages(exec_id)


def test_resume_id_argument_or_option() -> None:
    missing = cli("executions", "resume", "-o", "json")
    assert "Missing EXEC_ID" in assert_json_error(missing, "executions.resume", "UsageError")
    both = cli("executions", "resume", "a", "--exec-id", "b", "-o", "json")
    assert_json_error(both, "executions.resume", "UsageError")
    unknown = cli("executions", "resume", "--exec-id", "no-such-id", "-o", "json")
    assert "no-such-id" in assert_json_error(unknown, "executions.resume")


def test_input_resuming_here_json_stdout_is_only_the_document(any_store: str, flows: Flows) -> None:
    handle = flows.module.approval.run(0.0)
    eventually(lambda: _released(handle.exec_id), what="the runner to let go")
    result = proc("executions", "input", handle.exec_id, "--value", "true", "-o", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert_envelope(document, "executions.input")
    item = document["item"]
    assert item["exec_id"] == handle.exec_id
    assert item["status"] == "completed"
    assert {"frozen_execution_spec", "checkpoints", "artifacts", "llm_usage_records"} <= set(item)
    assert item["input"]["ran_here"] is True
    assert "AFTER-ANSWER True" in result.stderr
    assert "AFTER-ANSWER True" in _log_messages(handle.exec_id)


def test_input_value_must_be_json_for_a_bool_wait(any_store: str, flows: Flows) -> None:
    handle = flows.module.approval.run(0.0)
    eventually(lambda: _released(handle.exec_id), what="the runner to let go")
    for text in ("yes", "True", "y"):
        refused = cli("executions", "input", handle.exec_id, "--value", text, "-o", "json")
        message = assert_json_error(refused, "executions.input", "UsageError")
        assert "not JSON" in message
        assert "expects bool" in message
        assert "true or false" in message
    pending = KitaruClient().executions.pending_waits(handle.exec_id)
    assert [w.wait_id for w in pending] == ["approve"]  # nothing changed
    ok = cli("executions", "input", handle.exec_id, "--value", "false", "-o", "json")
    assert ok.exit_code == 0, ok.stderr
    assert ok.json()["item"]["input"]["value"] is False
    assert ok.json()["item"]["status"] == "completed"


def test_input_waits_for_a_live_runner_to_move_on(any_store: str, flows: Flows) -> None:
    """The answer goes to a runner in another process: print its state after it moved on."""
    for output in ("json", "text"):
        runner = flows.start("approval", 120.0)
        try:
            assert runner.stdout is not None
            exec_id = runner.stdout.readline().strip()
            _wait_pending(exec_id)
            result = proc("executions", "input", exec_id, "--value", "true", "-o", output)
            assert result.exit_code == 0, result.stderr
            if output == "json":
                item = json.loads(result.stdout)["item"]
                assert item["status"] == "completed"
                assert item["input"]["ran_here"] is False
            else:
                assert "Status: completed" in result.stdout
                assert "Status: waiting" not in result.stdout
            assert runner.wait(timeout=60) == 0
        finally:
            if runner.poll() is None:
                runner.kill()
            runner.wait()


def test_a_waiting_execution_whose_runner_died_is_marked(
    any_store: str, flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_LEASE_SECONDS", "0.5")
    runner = flows.start("approval", 120.0)
    try:
        assert runner.stdout is not None
        exec_id = runner.stdout.readline().strip()
        eventually(lambda: KitaruClient().executions.pending_waits(exec_id), what="the wait")
    finally:
        runner.kill()
        runner.wait()

    def marked() -> dict[str, Any] | None:
        items = cli("executions", "list", "-o", "json").json()["items"]
        item = next(i for i in items if i["exec_id"] == exec_id)
        return item if item["is_orphaned"] else None

    item = eventually(marked, what="the lease to expire")
    assert item["status"] == "waiting"
    listed = cli("executions", "list")
    line = next(line for line in listed.stdout.splitlines() if exec_id in line)
    assert "waiting (orphaned)" in line
    shown = cli("executions", "get", exec_id)
    assert "runner died while waiting" in shown.stdout
    assert cli("executions", "get", exec_id, "-o", "json").json()["item"]["is_orphaned"] is True
    # Answering resumes it here, since no runner holds it.
    answered = cli("executions", "input", exec_id, "--value", "true", "-o", "json")
    assert answered.exit_code == 0, answered.stderr
    assert answered.json()["item"]["status"] == "completed"
    assert answered.json()["item"]["is_orphaned"] is False


# --- executions get / list / logs -------------------------------------------------------

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


def test_get_and_list_items(any_store: str, flows: Flows) -> None:
    handle = flows.module.talker.run(3)
    handle.wait(timeout=60)
    listed = cli("executions", "list", "--flow", "talker", "--status", "completed", "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    assert_envelope(listed.json(), "executions.list")
    (item,) = listed.json()["items"]
    assert set(item) >= SUMMARY_KEYS
    assert "checkpoints" not in item
    got = cli("executions", "get", handle.exec_id, "-o", "json").json()
    assert_envelope(got, "executions.get")
    assert set(got["item"]) >= SUMMARY_KEYS | {
        "frozen_execution_spec",
        "original_exec_id",
        "llm_usage_records",
        "checkpoints",
        "artifacts",
    }


def test_logs_options(any_store: str, flows: Flows) -> None:
    handle = flows.module.talker.run(5)
    handle.wait(timeout=60)
    exec_id = handle.exec_id

    def messages(*args: str) -> list[str]:
        result = cli("executions", "logs", exec_id, *args, "-o", "json")
        assert result.exit_code == 0, result.stderr
        assert_envelope(result.json(), "executions.logs")
        items = result.json()["items"]
        assert all(None not in i.values() for i in items)  # null fields dropped
        return [i["message"] for i in items]

    assert messages() == ["body line", "talk 5"]
    assert messages("--source", "step") == ["talk 5"]
    assert messages("--source", "runner") == ["body line"]
    assert messages("--checkpoint", "talk") == ["talk 5"]
    assert messages("--limit", "1") == ["body line"]

    grouped_json = cli("executions", "logs", exec_id, "--grouped", "-o", "json")
    assert "--grouped" in assert_json_error(grouped_json, "executions.logs", "UsageError")
    grouped = cli("executions", "logs", exec_id, "--grouped")
    assert grouped.exit_code == 0, grouped.stderr
    assert "== (flow) (1 line)" in grouped.stdout
    assert "== talk (1 line)" in grouped.stdout
    plain = cli("executions", "logs", exec_id).stdout.splitlines()
    verbose = cli("executions", "logs", exec_id, "-v").stdout.splitlines()
    very = cli("executions", "logs", exec_id, "-vv").stdout.splitlines()
    assert "runner" not in plain[0]
    assert "runner" in verbose[0]
    assert "step" in verbose[1]
    assert len(very[1]) > len(verbose[1])
    bad = cli("executions", "logs", exec_id, "--source", "both")
    assert bad.exit_code == 1


def test_logs_follow_json_events_and_exit_codes(any_store: str, flows: Flows) -> None:
    handle = flows.module.talker.run(7)
    handle.wait(timeout=60)
    result = proc(
        "executions", "logs", handle.exec_id, "--follow", "--interval", "0.1", "-o", "json"
    )
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["log", "log", "terminal"]
    assert all(set(e) == {"command", "event", "item"} for e in events)
    assert all(e["command"] == "executions.logs" for e in events)
    assert events[-1]["item"]["status"] == "completed"

    failed = flows.module.retryable.run(1)
    eventually(
        lambda: KitaruClient().executions.get(failed.exec_id).status.is_finished,
        what="the run to fail",
    )
    result = proc("executions", "logs", failed.exec_id, "--follow", "-o", "json")
    assert result.exit_code == 1
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "terminal"
    assert events[-1]["item"]["status"] == "failed"
    text = cli("executions", "logs", failed.exec_id, "--follow")
    assert text.exit_code == 1
