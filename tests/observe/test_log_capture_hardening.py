"""Log capture in real processes: nothing swallowed outside flows, no line lost to a bad one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kitaru import KitaruClient
from tests.observe.conftest import child_env, run_child

RUN_CHILD = "import sys; from tests.observe._log_children import main; main(sys.argv[1:])"
#: The children print lone surrogates: make the terminal show them, not fail on them.
TERMINAL = {"PYTHONIOENCODING": "utf-8:backslashreplace"}


def _child(state: Path, scenario: str) -> tuple[str, str, list[str]]:
    child = run_child(["-c", RUN_CHILD, scenario], env=child_env(state, **TERMINAL), timeout=120)
    assert child.returncode == 0, child.stderr
    return child.stdout, child.stderr, re.findall(r"EXEC ([0-9a-f-]{36})", child.stdout)


def _stored(exec_id: str) -> list[tuple[str | None, str, str | None, str]]:
    entries = KitaruClient().executions.logs(exec_id, source=None)
    return [(e.call_id, e.stream, e.level, e.message) for e in entries]


def _assert_talks_stored_once(exec_id: str, err: str) -> None:
    stored = _stored(exec_id)
    assert [(c, s, lv, m.split("\n")[0]) for c, s, lv, m in stored] == [
        (None, "stdout", None, "inside body print"),
        (None, "logging", "WARNING", "inside body record"),
        (None, "logging", "ERROR", "inside failure"),
        ("inner_step", "stdout", None, "inside checkpoint print"),
        ("inner_step", "logging", "WARNING", "inside checkpoint record"),
    ]
    assert "ValueError: inside boom" in stored[2][3]  # the traceback is kept with the record
    # ... and printed once, not stored again as stderr lines.
    assert err.count("ValueError: inside boom") == 1


# --- records outside a flow reach exactly the handlers they would without Kitaru ------------


def test_configured_logging_outside_a_flow_after_one_ran(state_dir: Path) -> None:
    out, err, (talks, own) = _child(state_dir, "outside_configured")
    # Inside: each printed once on the terminal, stored once.
    assert out.count("inside body print") == 1
    assert out.count("inside checkpoint print") == 1
    assert err.count("CFG|app.user|inside body record\n") == 1
    assert err.count("CFG|app.user|inside checkpoint record\n") == 1
    _assert_talks_stored_once(talks, err)
    # Outside: through the root handler the user configured, once each.
    assert err.count("outside user warning configured") == 1
    assert "CFG|app.user|outside user warning configured\n" in err
    assert err.count("outside user info configured") == 1
    assert err.count("outside kitaru warning configured") == 1
    assert "CFG|kitaru|outside kitaru warning configured\n" in err
    # A handler of the user's own on a propagating logger, plus the root's: two prints
    # (as Python does), one stored record (its echo is not a second, stderr line).
    assert err.count("OWN|own record\n") == 1
    assert err.count("CFG|app.own|own record\n") == 1
    assert _stored(own) == [(None, "logging", "WARNING", "own record")]
    assert err.count("OWN|own outside\n") == 1
    assert err.count("CFG|app.own|own outside\n") == 1


def test_unconfigured_logging_outside_a_flow_uses_the_last_resort(state_dir: Path) -> None:
    out, err, (talks,) = _child(state_dir, "outside_unconfigured")
    assert out.count("inside body print") == 1
    assert err.count("inside body record") == 1
    assert err.count("inside checkpoint record") == 1
    _assert_talks_stored_once(talks, err)
    # Python's last resort prints warnings (message only) and nothing below them.
    assert err.count("outside user warning bare") == 1
    assert "\noutside user warning bare\n" in err
    assert err.count("outside kitaru warning bare") == 1
    assert "\noutside kitaru warning bare\n" in err
    assert "outside user info bare" not in err


def test_logging_configured_after_a_flow_ran_takes_effect(state_dir: Path) -> None:
    _, err, (talks,) = _child(state_dir, "configured_after_a_flow")
    _assert_talks_stored_once(talks, err)
    assert err.count("outside user warning late") == 1
    assert "LATE|app.user|outside user warning late\n" in err
    assert err.count("outside kitaru warning late") == 1
    assert "LATE|kitaru|outside kitaru warning late\n" in err
    assert "outside user info late" not in err


# --- a line the store cannot take as it is --------------------------------------------------


def _bad_lines(tag: str) -> list[tuple[str | None, str, str | None, str]]:
    return [
        (None, "stdout", None, f"{tag} good 1"),
        (None, "logging", "WARNING", f"{tag} good record"),
        (None, "stdout", None, f"{tag} bad \\udc80 line"),
        (None, "logging", "WARNING", f"{tag} bad record \\udcff"),
        (None, "stdout", None, f"{tag} nul \\x00 line"),
        (None, "logging", "A_LEVEL_NAME_WID", f"{tag} wide level"),  # cut to its column
        ("bad_step", "stdout", None, f"{tag} step good"),
        ("bad_step", "stdout", None, f"{tag} step bad \\udc80 line"),
        (None, "stdout", None, f"{tag} good 2"),
        (None, "stdout", None, f"{tag} good 3"),
    ]


def test_bad_text_is_stored_escaped_and_costs_no_other_line(
    any_store: str, state_dir: Path
) -> None:
    out, err, (a, b) = _child(state_dir, "bad_lines")
    assert _stored(a) == _bad_lines("a")
    assert _stored(b) == _bad_lines("b")
    # The terminal still shows each line once (print() writes its newline separately,
    # so two threads' lines may share a terminal line).
    for tag in ("a", "b"):
        assert out.count(f"{tag} bad \\udc80 line") == 1
        assert out.count(f"{tag} good 3") == 1
        assert err.count(f"{tag} bad record \\udcff") == 1
    assert "could not store" not in err


def test_a_store_that_cannot_take_logs_is_reported_once(any_store: str, state_dir: Path) -> None:
    out, err, _ = _child(state_dir, "logs_table_gone")
    assert re.findall(r"result \d+", out) == ["result 3", "result 4", "result 5"]
    assert err.count("Kitaru could not store") == 1, err
    assert "Further failures to store captured logs in this process are not reported" in err


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("plain", "plain"),
        ("accents é ✓", "accents é ✓"),
        ("lone \udc80 surrogate", "lone \\udc80 surrogate"),
        ("nul \x00 char", "nul \\x00 char"),
        ("both \x00\ud800", "both \\x00\\ud800"),
    ],
)
def test_storable_text(text: str, stored: str) -> None:
    from kitaru._store._logs import escape_for_store

    assert escape_for_store(text) == stored
