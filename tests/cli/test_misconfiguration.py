"""Misconfiguration through the real ``kitaru`` process: clear errors, warnings that go on.

Warnings are one ``Warning:`` line on stderr each (stdout stays clean, and JSON in
``-o json``); errors are one ``Error:`` line (or a JSON error on stderr), exit 1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kitaru._paths import config_dir
from tests.cli.conftest import CliResult, Flows, Invoke


def _warning_lines(result: CliResult) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]


def _one_error_line(result: CliResult) -> str:
    assert result.exit_code == 1, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_a_store_url_into_a_missing_directory_is_an_error_naming_path_and_fix(
    kitaru_proc: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    typo = tmp_path / "typo" / "dir"
    monkeypatch.setenv("KITARU_STORE_URL", f"sqlite:///{typo / 'store.db'}")
    line = _one_error_line(kitaru_proc("executions", "list"))
    assert str(typo) in line
    assert "does not exist" in line
    assert "KITARU_STORE_URL" in line
    assert f"mkdir -p {typo}" in line

    as_json = kitaru_proc("executions", "list", "-o", "json")
    assert as_json.exit_code == 1
    assert as_json.stdout == ""
    document = json.loads(as_json.stderr)
    assert document["error"]["type"] == "KitaruBackendError"
    assert str(typo) in document["error"]["message"]

    status = kitaru_proc("status", "-o", "json")  # status shows the problem, and goes on
    assert status.exit_code == 0, status
    assert str(typo) in json.loads(status.stdout)["item"]["store_problem"]
    assert not (tmp_path / "typo").exists()


def test_listing_a_store_file_that_does_not_exist_says_so(
    kitaru_proc: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "other.db"
    monkeypatch.setenv("KITARU_STORE_URL", f"sqlite:///{path}")
    line = _one_error_line(kitaru_proc("executions", "list"))
    assert str(path) in line
    assert "does not exist" in line
    assert "No executions" not in line
    assert not path.exists()


def test_the_default_store_lists_as_empty(kitaru_proc: Invoke) -> None:
    result = kitaru_proc("executions", "list")
    assert result.exit_code == 0, result
    assert "No executions." in result.stdout
    assert (config_dir() / "kitaru.db").is_file()


def test_invalid_toml_warns_once_and_reading_commands_go_on(
    kitaru_proc: Invoke, flows: Flows
) -> None:
    handle = flows.module.simple.run(2)
    handle.wait()
    pyproject = Path.cwd() / "pyproject.toml"
    pyproject.write_text("[tool.kitaru]\nretries = \n")

    listing = kitaru_proc("executions", "list")
    assert listing.exit_code == 0, listing
    assert handle.exec_id in listing.stdout
    warned = _warning_lines(listing)
    assert len(warned) == 1, listing.stderr
    assert str(pyproject) in warned[0]
    assert "not valid TOML" in warned[0]
    assert "line 2" in warned[0]  # the parse error itself

    as_json = kitaru_proc("executions", "get", handle.exec_id, "-o", "json")
    assert as_json.exit_code == 0, as_json
    assert json.loads(as_json.stdout)["item"]["exec_id"] == handle.exec_id
    assert len(_warning_lines(as_json)) == 1

    status = kitaru_proc("status")
    assert status.exit_code == 0, status
    assert len(_warning_lines(status)) == 1
    assert "not valid TOML" in status.stdout  # the settings it cannot resolve, and why


def test_invalid_toml_still_fails_a_flow_run(flows: Flows) -> None:
    Path.cwd().joinpath("pyproject.toml").write_text("[tool.kitaru\n")
    run = flows.run_in_subprocess("simple", 1)
    assert run.returncode != 0
    assert "KitaruUsageError" in run.stderr
    assert "not valid TOML" in run.stderr


def test_a_misspelled_key_warns_with_the_closest_valid_one(kitaru_proc: Invoke) -> None:
    Path.cwd().joinpath("pyproject.toml").write_text("[tool.kitaru]\nstore_ulr = 'x'\n")
    result = kitaru_proc("executions", "list", "-o", "json")
    assert result.exit_code == 0, result
    assert json.loads(result.stdout)["items"] == []
    warned = _warning_lines(result)
    assert len(warned) == 1, result.stderr
    assert "'store_ulr'" in warned[0]
    assert "Did you mean 'store_url'?" in warned[0]


def test_warnings_do_not_repeat_within_one_command(kitaru_proc: Invoke) -> None:
    # `status` resolves the store, the artifacts root and the settings: three reads.
    Path.cwd().joinpath("pyproject.toml").write_text("[tool.kitaru]\ncahce = false\n")
    result = kitaru_proc("status")
    assert result.exit_code == 0, result
    assert len(_warning_lines(result)) == 1, result.stderr
    assert os.linesep.join(_warning_lines(result)).count("Did you mean 'cache'?") == 1
