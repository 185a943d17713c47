"""kitaru --version/--help, init, status, and the error/JSON conventions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru._version import __version__
from tests.cli.conftest import Invoke

GROUPS_AND_COMMANDS = [
    [],
    ["init"],
    ["status"],
    ["worker"],
    ["executions"],
    *[["executions", c] for c in ("list", "get", "resume", "retry", "replay", "cancel", "delete")],
    ["stack"],
    *[["stack", c] for c in ("list", "current", "use", "create", "delete", "show")],
]


def test_version_as_a_real_process(kitaru_proc: Invoke) -> None:
    result = kitaru_proc("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"kitaru {__version__}"
    assert result.stderr == ""


def test_root_help_lists_the_command_groups(kitaru_proc: Invoke) -> None:
    result = kitaru_proc("--help")
    assert result.exit_code == 0
    for name in ("init", "status", "executions", "stack", "worker"):
        assert name in result.stdout


@pytest.mark.parametrize("path", GROUPS_AND_COMMANDS, ids=lambda p: " ".join(p) or "root")
def test_every_command_has_help(cli: Invoke, path: list[str]) -> None:
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.stderr
    assert "Usage:" in result.stdout
    assert "--help" in result.stdout
    if (path and path[0] not in ("executions", "stack")) or len(path) == 2:
        assert "--output" in result.stdout  # every command takes -o/--output


def test_no_arguments_prints_help(cli: Invoke) -> None:
    result = cli()
    assert "Usage:" in result.stdout
    assert "executions" in result.stdout


# --- errors --------------------------------------------------------------------------


def test_unknown_option_is_a_usage_error_with_one_line(cli: Invoke) -> None:
    result = cli("executions", "list", "--bogus")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: No such option: --bogus")
    assert "kitaru executions list --help" in lines[0]


def test_unknown_command_is_a_usage_error(cli: Invoke) -> None:
    result = cli("frobnicate")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: No such command")
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_error_in_json_mode_is_json_on_stderr(cli: Invoke) -> None:
    result = cli("executions", "list", "--status", "bogus", "-o", "json")
    assert result.exit_code == 1
    document = result.error_json()
    assert document["command"] == "executions.list"
    assert document["error"]["type"] == "UsageError"
    assert "bogus" in document["error"]["message"]


def test_bad_output_format_is_rejected(cli: Invoke) -> None:
    result = cli("status", "-o", "yaml")
    assert result.exit_code == 1
    assert "yaml" in result.stderr


def test_kitaru_error_is_one_line_and_exit_1_without_traceback(kitaru_proc: Invoke) -> None:
    result = kitaru_proc("executions", "get", "no-such-id")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "no-such-id" in lines[0]
    assert "Traceback" not in result.stderr


def test_kitaru_error_in_json_mode(cli: Invoke) -> None:
    result = cli("executions", "get", "no-such-id", "--output", "json")
    assert result.exit_code == 1
    document = result.error_json()
    assert set(document) == {"command", "error"}
    assert document["command"] == "executions.get"
    assert document["error"]["type"] == "KitaruBackendError"
    assert "no-such-id" in document["error"]["message"]


# --- init ------------------------------------------------------------------------------


def test_init_creates_the_marker_and_refuses_a_second_time(cli: Invoke) -> None:
    first = cli("init")
    assert first.exit_code == 0, first.stderr
    marker = Path.cwd() / ".kitaru"
    assert marker.is_dir()
    readme = (marker / "README.txt").read_text()
    assert "Kitaru project" in readme
    assert "Initialized a Kitaru project" in first.stdout
    assert "README.txt" in first.stdout

    # 0.21: an initialized directory is an error, and nothing in it changes.
    second = cli("init", "-o", "json")
    assert second.exit_code == 1
    assert second.error_json()["error"]["type"] == "KitaruUsageError"
    assert "already initialized" in second.error_json()["error"]["message"]
    assert (marker / "README.txt").read_text() == readme


def test_init_path_argument_and_json_item(cli: Invoke, tmp_path: Path) -> None:
    target = tmp_path / "proj"
    target.mkdir()
    result = cli("init", str(target), "-o", "json")
    assert result.exit_code == 0, result.stderr
    document = result.json()
    assert set(document) == {"command", "item"}
    assert document["command"] == "init"
    assert document["item"]["path"] == str(target)
    assert document["item"]["repository_directory"] == ".kitaru"
    assert (target / ".kitaru").is_dir()
    assert not (Path.cwd() / ".kitaru").exists()

    missing = cli("init", str(tmp_path / "nope"), "-o", "json")
    assert missing.exit_code == 1
    assert "no such directory" in missing.error_json()["error"]["message"]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    not_dir = cli("init", str(a_file))
    assert not_dir.exit_code == 1
    assert not_dir.stderr.startswith("Error: ")
    assert "not a directory" in not_dir.stderr
    zen = tmp_path / "zen"
    (zen / ".zen").mkdir(parents=True)
    refused = cli("init", str(zen))
    assert refused.exit_code == 1
    assert ".zen" in refused.stderr
    assert not (zen / ".kitaru").exists()


def test_init_refuses_when_marker_is_a_file(cli: Invoke) -> None:
    (Path.cwd() / ".kitaru").write_text("not a dir")
    result = cli("init")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert "not a directory" in result.stderr


# --- status ----------------------------------------------------------------------------


def test_status_table(cli: Invoke, kitaru_home: Path) -> None:
    result = cli("status")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert str(kitaru_home) in out
    assert "kitaru.db" in out
    assert "Active stack" in out
    for key in ("stack", "cache", "retries", "image"):
        assert key in out
    assert "default" in out
    assert "not a Kitaru project" in out


def test_status_json_shows_sources_and_hides_password(
    cli: Invoke, kitaru_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_STORE_URL", "postgresql+psycopg://kit:s3cret@db.example:5432/k")
    monkeypatch.setenv("KITARU_RETRIES", "3")
    Path("pyproject.toml").write_text("[tool.kitaru]\ncache = false\n")
    cli("init")
    result = cli("status", "-o", "json")
    assert result.exit_code == 0, result.stderr
    document = result.json()
    assert document["command"] == "status"
    item = document["item"]
    assert "s3cret" not in result.stdout
    assert item["store_url"] == "postgresql+psycopg://kit:***@db.example:5432/k"
    assert item["config_dir"] == str(kitaru_home)
    # 0.21's snapshot names, as `kitaru info` has them.
    assert item["config_directory"] == str(kitaru_home)
    assert item["sdk_version"] == kitaru.__version__
    assert item["active_stack"]["name"] == "local"
    settings = item["settings"]
    assert settings["retries"] == {"value": 3, "source": "env:KITARU_RETRIES"}
    assert settings["cache"]["value"] is False
    assert settings["cache"]["source"].startswith("pyproject:")
    assert settings["stack"] == {"value": "local", "source": "default"}
    assert item["pyproject"] == str(Path.cwd() / "pyproject.toml")
    assert item["project_root"] == str(Path.cwd())


def test_status_shows_active_stack_source(cli: Invoke) -> None:
    cli("stack", "create", "team", "--activate")
    item = cli("status", "-o", "json").json()["item"]
    assert item["active_stack"]["name"] == "team"
    assert item["settings"]["stack"] == {"value": "team", "source": "active stack"}


def test_status_survives_a_broken_setting(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_STACK", "missing-stack")
    result = cli("status")
    assert result.exit_code == 0
    assert "Settings cannot be resolved" in result.stdout
    assert "missing-stack" in result.stdout
    item = cli("status", "-o", "json").json()["item"]
    assert item["settings"] is None
    assert "missing-stack" in item["settings_error"]["message"]


def test_json_output_is_only_json(kitaru_proc: Invoke) -> None:
    result = kitaru_proc("status", "-o", "json")
    assert result.exit_code == 0
    json.loads(result.stdout)  # the whole of stdout is one JSON document


def test_server_start_on_a_busy_port_is_one_typed_error(cli: Invoke) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = cli("server", "start", "--port", port, "-o", "json")
        assert result.exit_code == 1
        assert result.stdout == ""
        error = json.loads(result.stderr)["error"]
        assert error["type"] == "KitaruUsageError"
        assert f"127.0.0.1:{port}" in error["message"]
        assert "--port" in error["message"]
        text = cli("server", "start", "--port", port)
        assert text.exit_code == 1
        assert text.stderr.startswith("Error: Cannot serve on")
        assert "Kitaru server on" not in text.stdout + text.stderr


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("999.1.1.1", "is not an address or host name this machine resolves"),
        ("198.51.100.77", "is not an address of this machine"),  # TEST-NET-2: not ours
    ],
)
def test_server_start_on_a_host_that_is_not_ours_says_so(
    cli: Invoke, host: str, expected: str
) -> None:
    result = cli("server", "start", "--host", host, "--port", "18999", "-o", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["type"] == "KitaruUsageError"
    assert expected in error["message"]
    assert "--host" in error["message"]
    assert "Another process may be listening" not in error["message"]


@kitaru.checkpoint
def _not_a_number() -> float:
    kitaru.log(score=float("nan"), bounds=[float("-inf"), 1.5])
    return float("inf")


@kitaru.flow
def _odd_numbers() -> float:
    return _not_a_number()


def test_json_output_is_strict_json_even_with_nan_and_infinity(cli: Invoke) -> None:
    handle = _odd_numbers.run()
    assert handle.wait(timeout=30) == float("inf")

    def strict(text: str) -> Any:
        def refuse(name: str) -> None:
            raise AssertionError(f"non-standard JSON constant {name}")

        return json.loads(text, parse_constant=refuse)

    for args in (["executions", "get", handle.exec_id], ["executions", "list"]):
        result = cli(*args, "-o", "json")
        assert result.exit_code == 0, result.stderr
        document = strict(result.stdout)
        assert document["command"].startswith("executions.")
    item = strict(cli("executions", "get", handle.exec_id, "-o", "json").stdout)["item"]
    (call,) = item["checkpoints"]
    assert call["metadata"]["score"] is None
    assert call["metadata"]["bounds"] == [None, 1.5]
