"""Out-of-range options and odd environments: usage errors and clear messages, never
"Unexpected internal error ... This is a bug in Kitaru".

Integer options that reach store queries are bounded (SQLite and PostgreSQL take
64-bit integers; page x size must fit too); seconds must be finite; an in-memory
SQLite store URL, a blank package name and a stdout that cannot be written say what
is wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import typer.main
from typer.testing import CliRunner

from kitaru.cli import app
from kitaru.cli._output import MAX_COUNT
from tests.cli.conftest import CliResult, Flows, Invoke

HUGE = "99999999999999999999"


def _usage_error(result: CliResult, *names: str) -> str:
    """A one-line usage error (exit 1, nothing on stdout) naming each of ``names``."""
    assert result.exit_code == 1, result
    assert result.stdout == ""
    assert "bug in Kitaru" not in result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["executions", "list", "--limit", HUGE],
        ["executions", "list", "--page", "9999999999", "--size", "2"],
        ["executions", "list", "--size", HUGE],
        ["executions", "logs", "some-id", "--limit", HUGE],
        ["executions", "cohort", "--flow", "f", "--at", "c", "--max-scan", HUGE],
        ["executions", "cohort", "--flow", "f", "--at", "c", "--limit", HUGE],
        ["executions", "cohort", "--flow", "f", "--at", "c", "--max-scan", "0"],
        ["executions", "statistics", "--page", HUGE],
        ["executions", "statistics", "--size", "0"],
        ["executions", "input", "--page", HUGE],
        ["artifacts", "list", "some-id", "--size", HUGE],
        ["stack", "list", "--page", HUGE],
    ],
    ids=lambda args: " ".join(args[:2] + [a for a in args if a.startswith("--")]),
)
def test_an_integer_option_out_of_range_is_a_usage_error(
    cli: Invoke, any_store: str, args: list[str]
) -> None:
    option = next(a for a in reversed(args) if a.startswith("--"))
    if args[-1] == "2":  # --page 9999999999 --size 2: the page is out of range
        option = "--page"
    _usage_error(cli(*args), option)
    document = cli(*args, "-o", "json").error_json()
    assert document["error"]["type"] == "UsageError"
    assert option in document["error"]["message"]


def test_the_largest_page_and_size_reach_the_store_safely(cli: Invoke, any_store: str) -> None:
    largest = str(MAX_COUNT)
    result = cli("executions", "list", "--page", largest, "--size", largest, "-o", "json")
    assert result.exit_code == 0, result
    assert result.json()["items"] == []
    limited = cli("executions", "list", "--limit", largest, "-o", "json")
    assert limited.exit_code == 0, limited


def test_calls_out_of_range_is_a_usage_error(cli: Invoke, flows: Flows) -> None:
    handle = flows.module.simple.run(1)
    handle.wait()
    _usage_error(cli("executions", "get", handle.exec_id, "--calls", HUGE), "--calls")
    assert cli("executions", "get", handle.exec_id, "--calls", str(MAX_COUNT)).exit_code == 0


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e300", "0"])
@pytest.mark.parametrize(
    "args", [["worker", "--poll-interval"], ["executions", "logs", "x", "-f", "--interval"]]
)
def test_seconds_must_be_finite_and_in_range(cli: Invoke, args: list[str], value: str) -> None:
    line = _usage_error(cli(*args, value), args[-1])
    assert "seconds" in line


def test_an_in_memory_sqlite_store_url_says_what_to_use(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    for url in ("sqlite://", "sqlite:///:memory:"):
        monkeypatch.setenv("KITARU_STORE_URL", url)
        line = _usage_error(cli("executions", "list"))
        assert "in-memory SQLite database" in line
        assert "sqlite:////absolute/path/kitaru.db" in line
        document = cli("executions", "list", "-o", "json").error_json()
        assert document["error"]["type"] == "KitaruUsageError"


def test_a_blank_package_name_is_a_usage_error(cli: Invoke) -> None:
    _usage_error(cli("info", "-p", ""), "--packages")
    _usage_error(cli("info", "--packages", "  "), "--packages")
    assert cli("info", "-p", "sqlalchemy", "-o", "json").json()["item"]["packages"].keys() == {
        "sqlalchemy"
    }


def _to_dev_full(*args: str) -> subprocess.CompletedProcess[str]:
    with open("/dev/full", "w") as full:
        return subprocess.run(
            [sys.executable, "-m", "kitaru.cli", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=60,
            env=dict(os.environ),
        )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    "args",
    [
        ["executions", "list", "-o", "json"],
        ["executions", "list"],
        ["stack", "list"],
        ["status", "-o", "json"],
        ["--help"],
        ["--version"],
    ],
    ids=" ".join,
)
def test_a_stdout_that_cannot_be_written_is_a_clear_error(args: list[str], flows: Flows) -> None:
    flows.module.simple.run(1).wait()
    proc = _to_dev_full(*args)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "bug in Kitaru" not in proc.stderr
    assert "Exception ignored" not in proc.stderr
    if "json" in args:
        document = json.loads(proc.stderr)
        assert document["error"]["type"] == "KitaruRuntimeError"
        message = document["error"]["message"]
    else:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        message = lines[0]
    assert "Cannot write the output to stdout" in message
    assert "No space left on device" in message


def test_a_reader_that_stops_reading_is_no_error_to_report(flows: Flows) -> None:
    for x in range(30):  # a listing longer than the pipe's reader wants
        flows.module.simple.run(x).wait()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kitaru.cli", "executions", "list", "--size", "30", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # like `| head -0`
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err
    assert "bug in Kitaru" not in err
    assert "Exception ignored" not in err


def _commands(group: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    for name, sub in group.commands.items():
        if isinstance(sub, click.Group):
            yield from _commands(sub, [*path, name])
        else:
            yield [*path, name], sub


def test_help_describes_every_option() -> None:
    """Every option of every command says what it does (``server start --port`` and
    ``auth service-accounts create -d`` did not)."""
    root = typer.main.get_command(app)
    bare = [
        f"kitaru {' '.join(path)} {'/'.join(param.opts)}"
        for path, cmd in _commands(root, [])
        for param in cmd.params
        if isinstance(param, click.Option) and not (param.help or "").strip()
    ]
    assert bare == []
    described = CliRunner().invoke(app, ["server", "start", "--help"]).stdout
    assert "Port to listen on" in described
