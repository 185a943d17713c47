"""Text that is not valid Unicode: lone surrogates in argv and in stored values.

Python turns bytes that do not decode (``$'\\xff\\xfe'`` on a command line) into lone
surrogates, which no database and no strict UTF-8 stream accepts. An id made of such
bytes is an unknown id; stored values holding them print escaped (``\\udc80``), in
text and in JSON (which must stay valid). The CLI runs as a real process with bytes
arguments and a strict UTF-8 stdout, like a UTF-8 terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

import kitaru
from kitaru import KitaruClient, checkpoint, flow
from kitaru.errors import KitaruBackendError

BAD_ARG = b"\xff\xfe"
BAD_TEXT = os.fsdecode(BAD_ARG)  # what Python makes of those bytes: "\udcff\udcfe"
SHOWN = "\\udcff\\udcfe"  # how it must be shown


@checkpoint
def echo(value: str) -> dict[str, str]:
    kitaru.log(note="call \udc83")
    return {"key \udc81": value}


@flow
def odd_text_flow(value: str) -> dict[str, str]:
    kitaru.log(**{"flow \udc84": "value \udc85"})
    return echo(value)


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    def error_json(self) -> dict[str, Any]:
        assert self.stdout == "", self.stdout
        data: dict[str, Any] = json.loads(self.stderr)
        return data


def kitaru_bytes(*args: str | bytes) -> Run:
    """``python -m kitaru.cli ARGS`` with bytes arguments and strict UTF-8 output streams."""
    argv = [os.fsencode(a) if isinstance(a, str) else a for a in args]
    proc = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"kitaru.cli", *argv],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"},
    )
    # Both streams must be valid UTF-8 (strict decoding raises otherwise).
    return Run(proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8"))


def _assert_one_error_line(run: Run, *needles: str) -> None:
    assert run.exit_code == 1, run
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("Error: ")
    assert "bug in Kitaru" not in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["executions", "get"],
        ["executions", "logs"],
        ["executions", "cancel"],
        ["executions", "delete", "--yes"],
        ["artifacts", "list"],
    ],
    ids=lambda a: " ".join(a),
)
def test_an_undecodable_id_on_the_command_line_is_an_unknown_id(
    any_store: str, args: list[str]
) -> None:
    text = kitaru_bytes(*args, BAD_ARG)
    _assert_one_error_line(text, f"Failed to load execution '{SHOWN}'")
    document = kitaru_bytes(*args, BAD_ARG, "-o", "json").error_json()
    assert document["error"]["type"] == "KitaruBackendError"
    assert SHOWN in document["error"]["message"]


def test_an_undecodable_artifact_id_is_an_unknown_artifact(any_store: str) -> None:
    text = kitaru_bytes("artifacts", "show", BAD_ARG)
    _assert_one_error_line(text, f"Failed to load artifact '{SHOWN}'")
    document = kitaru_bytes("artifacts", "show", BAD_ARG, "-o", "json").error_json()
    assert document["error"]["type"] == "KitaruBackendError"


def test_undecodable_filters_match_nothing(any_store: str) -> None:
    handle = odd_text_flow.run("plain")
    handle.wait(timeout=30)
    listing = kitaru_bytes("executions", "list", "--flow", BAD_ARG, "-o", "json")
    assert listing.exit_code == 0, listing
    assert json.loads(listing.stdout)["items"] == []
    artifacts = kitaru_bytes("artifacts", "list", handle.exec_id, "--name", BAD_ARG)
    assert artifacts.exit_code == 0, artifacts
    assert "No artifacts match" in artifacts.stdout


def test_the_client_treats_undecodable_ids_as_unknown(any_store: str) -> None:
    client = KitaruClient()
    for call in (
        lambda: client.executions.get(BAD_TEXT),
        lambda: client.executions.cancel(BAD_TEXT),
        lambda: client.executions.retry(BAD_TEXT),
        lambda: client.executions.resume(BAD_TEXT),
        lambda: client.executions.pending_waits(BAD_TEXT),
        lambda: client.executions.logs(BAD_TEXT),
        lambda: client.artifacts.list(BAD_TEXT),
        lambda: client.artifacts.get(BAD_TEXT),
    ):
        with pytest.raises(KitaruBackendError):
            call()
    assert client.executions.list(flow=BAD_TEXT) == []


def test_stored_values_with_lone_surrogates_print_escaped(any_store: str) -> None:
    handle = odd_text_flow.run("input \udc80")
    assert handle.wait(timeout=30) == {"key \udc81": "input \udc80"}
    exec_id = handle.exec_id
    # The API hands back the stored values as they are; only display escapes them.
    execution = KitaruClient().executions.get(exec_id)
    assert execution.metadata == {"flow \udc84": "value \udc85"}
    assert execution.checkpoints[0].metadata == {"note": "call \udc83"}

    text = kitaru_bytes("executions", "get", exec_id)
    assert text.exit_code == 0, text
    assert "\\udc84" in text.stdout
    assert "\\udc83" in text.stdout

    document = kitaru_bytes("executions", "get", exec_id, "-o", "json")
    assert document.exit_code == 0, document
    item = json.loads(document.stdout)["item"]
    assert item["metadata"] == {"flow \\udc84": "value \\udc85"}
    assert item["checkpoints"][0]["metadata"] == {"note": "call \\udc83"}

    listing = kitaru_bytes("executions", "list", "-o", "json")
    assert listing.exit_code == 0, listing
    assert json.loads(listing.stdout)["items"][0]["metadata"] == {"flow \\udc84": "value \\udc85"}

    output = next(a for a in KitaruClient().artifacts.list(exec_id) if a.role == "output")
    shown = kitaru_bytes("artifacts", "show", output.artifact_id, "--value")
    assert shown.exit_code == 0, shown
    assert "\\udc81" in shown.stdout
    assert "\\udc80" in shown.stdout
    value = kitaru_bytes("artifacts", "show", output.artifact_id, "--value", "-o", "json")
    assert value.exit_code == 0, value
    assert json.loads(value.stdout)["item"]["value"] == {"key \\udc81": "input \\udc80"}

    inputs = next(a for a in KitaruClient().artifacts.list(exec_id) if a.role == "flow_inputs")
    shown_inputs = kitaru_bytes("artifacts", "show", inputs.artifact_id, "--value", "-o", "json")
    assert shown_inputs.exit_code == 0, shown_inputs
    args, _kwargs = json.loads(shown_inputs.stdout)["item"]["value"]
    assert args == ["input \\udc80"]
