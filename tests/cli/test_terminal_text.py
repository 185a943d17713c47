"""Stored text never drives the terminal: control characters are shown escaped in text.

A checkpoint prints an OSC title sequence and a colour code, logs metadata holding
one, and raises with a screen-clearing sequence. ``executions logs`` and
``executions get`` (and the error line of a command that ran it) show those bytes
as ``\\x1b``..., never raw; ``-o json`` keeps the exact text (JSON escapes them).
"""

from __future__ import annotations

import json

import pytest

import kitaru
from kitaru import checkpoint, flow
from kitaru.cli._output import escape_control
from tests.cli.conftest import Invoke

PRINTED = "\x1b]0;TITLE\x07 \x1b[31mred\r\x9b2J\x7f"
RAISED = "x \x1b[2J"
LOGGED = "meta \x1b[5m"
#: Bytes no text output may carry: C0 but newline and tab, DEL, C1.
RAW = [chr(c) for c in [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]]


@checkpoint
def noisy_step(x: int) -> int:
    print(PRINTED)
    kitaru.log(note=LOGGED)
    return x + 1


@checkpoint
def failing_step(x: int) -> int:
    raise ValueError(RAISED)


@flow
def escape_flow(x: int = 1) -> int:
    return failing_step(noisy_step(x))


def _no_raw_control(text: str) -> None:
    found = sorted({f"{ord(ch):#04x}" for ch in text if ch in RAW})
    assert not found, f"raw control characters in text output: {found}"


@pytest.fixture
def exec_id() -> str:
    handle = escape_flow.run(1)
    with pytest.raises(kitaru.KitaruError):
        handle.wait()
    return str(handle.exec_id)


def test_escape_control_keeps_newline_and_tab() -> None:
    assert escape_control("a\tb\nc") == "a\tb\nc"
    assert escape_control("\x1b[31m\x07\r\x00\x7f\x9b") == "\\x1b[31m\\x07\\x0d\\x00\\x7f\\x9b"
    assert escape_control("plain, ünïcode ✓") == "plain, ünïcode ✓"


def test_logs_show_control_characters_escaped(cli: Invoke, exec_id: str) -> None:
    for args in ([], ["--grouped"], ["-vv"], ["--follow"]):
        result = cli("executions", "logs", exec_id, *args)
        assert result.exit_code == (1 if args == ["--follow"] else 0), result
        _no_raw_control(result.stdout)
        _no_raw_control(result.stderr)
        assert "\\x1b]0;TITLE\\x07 \\x1b[31mred\\x0d\\x9b2J\\x7f" in result.stdout

    entries = cli("executions", "logs", exec_id, "-o", "json").json()["items"]
    assert PRINTED in [entry["message"] for entry in entries]  # JSON: the exact text
    lines = cli("executions", "logs", exec_id, "--follow", "-o", "json").stdout.splitlines()
    assert PRINTED in [json.loads(line)["item"].get("message") for line in lines]


def test_get_shows_failure_and_metadata_escaped(cli: Invoke, exec_id: str) -> None:
    text = cli("executions", "get", exec_id, "--calls", "all")
    assert text.exit_code == 0, text
    _no_raw_control(text.stdout)
    assert "x \\x1b[2J" in text.stdout

    item = cli("executions", "get", exec_id, "-o", "json").json()["item"]
    assert item["failure"]["message"] == RAISED  # JSON: the exact text
    assert item["checkpoints"][0]["metadata"] == {"note": LOGGED}


def test_an_error_line_shows_the_failure_escaped(cli: Invoke, exec_id: str) -> None:
    retried = cli("executions", "retry", exec_id)
    assert retried.exit_code == 1
    _no_raw_control(retried.stdout + retried.stderr)
    assert "x \\x1b[2J" in retried.stderr

    as_json = cli("executions", "retry", exec_id, "-o", "json")
    assert as_json.exit_code == 1
    assert f"ValueError: {RAISED}" in as_json.error_json()["error"]["message"]


def test_an_unknown_id_with_control_characters_is_shown_escaped(cli: Invoke) -> None:
    result = cli("executions", "get", "bad\x1b]0;pwned\x07id")
    assert result.exit_code == 1
    _no_raw_control(result.stderr)
    assert "bad\\x1b]0;pwned\\x07id" in result.stderr
