"""Size limits on flow inputs and wait input, and the memory a large flow input costs.

Inputs over ``KITARU_MAX_FLOW_INPUT_BYTES`` / ``KITARU_MAX_WAIT_INPUT_BYTES`` are
refused with a typed error naming the input, its size, the limit and the
setting, and nothing is stored. Inputs within the limit are stored in a form
that costs one serialized copy (measured in a child process: peak RSS).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import kitaru
from kitaru import KitaruError, checkpoint, flow
from kitaru._backend import get_backend
from kitaru._limits import (
    DEFAULT_MAX_FLOW_INPUT_BYTES,
    DEFAULT_MAX_WAIT_INPUT_BYTES,
    MIB,
    max_flow_input_bytes,
    max_wait_input_bytes,
)
from kitaru._store import WaitStatus
from kitaru.cli import app
from kitaru.client import ExecutionStatus, KitaruClient
from kitaru.config import resolve_artifacts_root
from kitaru.errors import KitaruUsageError, KitaruWaitValidationError
from tests.waits import _flows
from tests.waits.conftest import exec_threads, one_error_line, wait_until_released

FLOW_ENV = "KITARU_MAX_FLOW_INPUT_BYTES"
WAIT_ENV = "KITARU_MAX_WAIT_INPUT_BYTES"


@pytest.fixture(autouse=True)
def _no_runner_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    if "any_store" in request.fixturenames:
        request.getfixturevalue("any_store")  # torn down after the cleanup below
    before = set(exec_threads())
    yield
    client = KitaruClient()
    with contextlib.suppress(KitaruError):
        for execution in client.executions.list(status=["running", "waiting"]):
            with contextlib.suppress(KitaruError):
                client.executions.cancel(execution.exec_id)
    for thread in set(exec_threads()) - before:
        thread.join(timeout=30)


class Note(BaseModel):
    text: str
    score: int = 0


@checkpoint
def measure(data: bytes) -> int:
    return len(data)


@flow(cache=False)
def ingest(data: bytes, label: str = "x") -> dict[str, Any]:
    return {"size": measure(data), "label": label}


@flow(cache=False)
def echo_after_wait(
    data: bytes, note: Note, *, extra: dict[str, Any], raw: bytearray, pair: tuple[int, str]
) -> dict[str, Any]:
    kitaru.wait(name="go", timeout=0)  # let go: the answer resumes it from the store
    return {
        "data": [type(data).__name__, len(data), data[:4].hex()],
        "note": [type(note).__name__, note.model_dump()],
        "extra": extra,
        "raw": [type(raw).__name__, bytes(raw).hex()],
        "pair": [type(pair).__name__, list(pair)],
    }


def blob_files() -> set[Path]:
    root = Path(resolve_artifacts_root())
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


# --- settings ---------------------------------------------------------------------------


def test_limit_settings_defaults_units_and_unlimited(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_flow_input_bytes() == DEFAULT_MAX_FLOW_INPUT_BYTES == 8 * MIB
    assert max_wait_input_bytes() == DEFAULT_MAX_WAIT_INPUT_BYTES == 1 * MIB
    for raw, expected in [
        ("1000", 1000),
        ("512k", 512 * 1024),
        ("64MiB", 64 * MIB),
        ("2 MB", 2 * MIB),
        ("1G", 1024 * MIB),
        ("unlimited", None),
        ("  ", DEFAULT_MAX_FLOW_INPUT_BYTES),
    ]:
        monkeypatch.setenv(FLOW_ENV, raw)
        assert max_flow_input_bytes() == expected, raw
    monkeypatch.setenv(WAIT_ENV, "off")
    assert max_wait_input_bytes() is None


@pytest.mark.parametrize("raw", ["0", "-1", "lots", "1.5MiB", "12 parsecs"])
def test_a_bad_limit_setting_is_a_usage_error_naming_it(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FLOW_ENV, raw)
    with pytest.raises(KitaruUsageError, match=FLOW_ENV) as info:
        ingest.run(b"abc")
    assert repr(raw) in str(info.value)
    assert KitaruClient().executions.list() == []


def test_limits_are_also_set_by_configure_and_pyproject_with_that_precedence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.kitaru]\nmax_flow_input_bytes = "2KiB"\nmax_wait_input_bytes = 4096\n'
    )
    monkeypatch.chdir(project)
    assert (max_flow_input_bytes(), max_wait_input_bytes()) == (2048, 4096)  # pyproject
    monkeypatch.setenv(FLOW_ENV, "3KiB")
    assert max_flow_input_bytes() == 3072  # the environment wins over pyproject
    kitaru.configure(max_flow_input_bytes="unlimited", max_wait_input_bytes=1000)
    assert (max_flow_input_bytes(), max_wait_input_bytes()) == (None, 1000)  # configure wins
    kitaru.configure(max_flow_input_bytes=None)  # cleared: back to the environment
    assert max_flow_input_bytes() == 3072

    with pytest.raises(KitaruUsageError, match="max_flow_input_bytes must be a positive size"):
        kitaru.configure(max_flow_input_bytes=0)
    assert max_flow_input_bytes() == 3072  # a refused configure() changes nothing

    monkeypatch.delenv(FLOW_ENV)
    (project / "pyproject.toml").write_text('[tool.kitaru]\nmax_flow_input_bytes = "lots"\n')
    with pytest.raises(KitaruUsageError, match=r"max_flow_input_bytes.*\[tool.kitaru\]"):
        max_flow_input_bytes()


def test_a_configured_limit_refuses_a_run_and_names_every_way_to_raise_it(
    any_store: str,
) -> None:
    kitaru.configure(max_flow_input_bytes="1KiB")
    with pytest.raises(KitaruUsageError) as info:
        ingest.run(os.urandom(2000))
    message = str(info.value)
    assert "over the limit of 1 KiB (1024 bytes)" in message
    assert "kitaru.configure(max_flow_input_bytes=...)" in message
    assert "[tool.kitaru]" in message
    assert KitaruClient().executions.list() == []


# --- flow inputs ------------------------------------------------------------------------


def test_flow_input_over_the_limit_is_refused_and_nothing_is_stored(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FLOW_ENV, "64KiB")
    big = os.urandom(100_000)
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((big,), {}),
        ((), {"data": big, "label": "kw"}),
    ]
    for args, kwargs in calls:
        with pytest.raises(KitaruUsageError) as info:
            ingest.run(*args, **kwargs)
        message = str(info.value)
        assert message.startswith("The inputs of flow 'ingest' are too large: 97.7 KiB")
        # The input (also when positional), its size, the limit and the setting to raise.
        assert "(input 'data': 97.7 KiB" in message
        assert "over the limit of 64 KiB (65536 bytes)" in message
        assert f"{FLOW_ENV}=256MiB" in message
    assert KitaruClient().executions.list() == []
    assert blob_files() == set()

    monkeypatch.setenv(FLOW_ENV, "1MiB")
    assert ingest.run(big, label="ok").wait(timeout=60) == {"size": 100_000, "label": "ok"}


def test_default_flow_input_limit_is_8_mib(any_store: str) -> None:
    with pytest.raises(KitaruUsageError, match=f"over the limit of 8 MiB .*{FLOW_ENV}"):
        ingest.run(bytes(8 * MIB))
    assert KitaruClient().executions.list() == []
    assert blob_files() == set()
    assert ingest.run(bytes(7 * MIB)).wait(timeout=60)["size"] == 7 * MIB


def test_flow_inputs_round_trip_through_the_store(any_store: str) -> None:
    data = os.urandom(200_000)  # over the inline limit: stored as a blob
    client = KitaruClient()
    handle = echo_after_wait.run(
        data,
        Note(text="n", score=3),
        extra={"k": [1, 2.5, None, "s"]},
        raw=bytearray(b"\x00\xff"),
        pair=(7, "seven"),
    )
    wait_until_released(client, handle.exec_id)
    # The runner let go: giving input resumes it here, with inputs read back from the store.
    client.executions.input(handle.exec_id, wait="go", value=None)
    assert handle.wait(timeout=60) == {
        "data": ["bytes", 200_000, data[:4].hex()],
        "note": ["Note", {"text": "n", "score": 3}],
        "extra": {"k": [1, 2.5, None, "s"]},
        "raw": ["bytearray", "00ff"],
        "pair": ["tuple", [7, "seven"]],
    }
    assert client.executions.get(handle.exec_id).run_count == 2
    [inputs] = client.artifacts.list(handle.exec_id, role="flow_inputs")
    args, kwargs = inputs.load()
    assert args == (data, Note(text="n", score=3))
    assert kwargs == {
        "extra": {"k": [1, 2.5, None, "s"]},
        "raw": bytearray(b"\x00\xff"),
        "pair": (7, "seven"),
    }
    assert type(kwargs["raw"]) is bytearray


def test_replay_flow_override_over_the_limit_is_refused_and_nothing_is_stored(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FLOW_ENV, "64KiB")
    client = KitaruClient()
    source = ingest.run(b"small", label="src")
    assert source.wait(timeout=60) == {"size": 5, "label": "src"}
    artifacts_before = [a.artifact_id for a in client.artifacts.list(source.exec_id)]
    files_before = blob_files()
    with pytest.raises(KitaruUsageError) as info:
        client.executions.replay(
            source.exec_id,
            at="measure",
            flow_overrides={"data": os.urandom(100_000)},
            # Large enough to be written as a blob, were it written before the check.
            checkpoint_overrides={"measure": {"output": "x" * 200_000}},
        )
    message = str(info.value)
    assert f"The flow inputs of the replay of execution {source.exec_id} are too large" in message
    assert "(input 'data': 97.7 KiB" in message
    assert FLOW_ENV in message
    assert [e.exec_id for e in client.executions.list()] == [source.exec_id]
    assert [a.artifact_id for a in client.artifacts.list(source.exec_id)] == artifacts_before
    assert blob_files() == files_before

    monkeypatch.setenv(FLOW_ENV, "1MiB")
    submission = client.executions.replay(
        source.exec_id, at="measure", flow_overrides={"data": bytes(100_000)}, wait=True
    )
    replay = client.executions.get(submission.results[0].replay_exec_id)
    assert replay.status is ExecutionStatus.COMPLETED


def test_replay_without_flow_overrides_keeps_inputs_accepted_under_a_higher_limit(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FLOW_ENV, "1MiB")
    source = ingest.run(bytes(100_000))
    assert source.wait(timeout=60)["size"] == 100_000
    monkeypatch.setenv(FLOW_ENV, "64KiB")
    # Same inputs as recorded: nothing new to check. New values are checked.
    client = KitaruClient()
    submission = client.executions.replay(source.exec_id, at="measure", wait=True)
    assert submission.results[0].status == "completed"
    with pytest.raises(KitaruUsageError, match="too large"):
        client.executions.replay(source.exec_id, at="measure", flow_overrides={"label": "y"})


# --- wait input -------------------------------------------------------------------------


def _assert_still_waiting(exec_id: str, wait_id: str) -> None:
    stored = get_backend().store.get_wait(exec_id, wait_id)
    assert stored is not None
    assert stored.status is WaitStatus.PENDING
    assert stored.value is None
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status is ExecutionStatus.WAITING
    assert execution.run_count == 1


def test_wait_input_over_the_limit_is_refused_and_the_wait_stays_pending(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WAIT_ENV, "1KiB")
    client = KitaruClient()
    handle = _flows.typed.run("str", 0)
    wait_until_released(client, handle.exec_id)
    with pytest.raises(KitaruWaitValidationError) as info:
        client.executions.input(handle.exec_id, wait="ask-str", value="é" * 1000)
    message = str(info.value)
    assert message.startswith(
        f"Input for wait 'ask-str' of execution {handle.exec_id} is too large: "
        "2 KiB (2002 bytes) as JSON, over the limit of 1 KiB (1024 bytes)"
    )
    assert "the execution is still waiting" in message
    assert f"{WAIT_ENV}=16MiB" in message
    _assert_still_waiting(handle.exec_id, "ask-str")

    client.executions.input(handle.exec_id, wait="ask-str", value="y" * 1000)
    assert handle.wait(timeout=60)["data"] == "y" * 1000


def test_default_wait_input_limit_is_1_mib(any_store: str) -> None:
    client = KitaruClient()
    handle = _flows.typed.run("str", 0)
    wait_until_released(client, handle.exec_id)
    with pytest.raises(KitaruWaitValidationError, match=f"over the limit of 1 MiB .*{WAIT_ENV}"):
        client.executions.input(handle.exec_id, wait="ask-str", value="x" * MIB)
    _assert_still_waiting(handle.exec_id, "ask-str")


def _cli(*args: str, input: str | None = None) -> Any:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": "250"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_cli_input_over_the_limit_is_one_error_line_and_json_error(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WAIT_ENV, "1KiB")
    client = KitaruClient()
    handle = _flows.typed.run("dict", 0)
    wait_until_released(client, handle.exec_id)
    value = json.dumps({"text": "z" * 2000})

    result = _cli("executions", "input", handle.exec_id, "--value", value)
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "Input for wait 'ask-dict'" in line
    assert "too large: 2 KiB (2011 bytes)" in line
    assert WAIT_ENV in line

    as_json = _cli("executions", "input", handle.exec_id, "--value", value, "-o", "json")
    assert as_json.exit_code == 1
    assert as_json.stdout == ""  # a JSON error goes to stderr, stdout stays empty
    document = json.loads(as_json.stderr)
    assert document["command"] == "executions.input"
    assert document["error"]["type"] == "KitaruWaitValidationError"
    assert WAIT_ENV in document["error"]["message"]
    _assert_still_waiting(handle.exec_id, "ask-dict")


def test_terminal_prompt_explains_a_too_large_answer_and_asks_again(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WAIT_ENV, "1KiB")
    client = KitaruClient()
    handle = _flows.typed.run("str", 0)
    wait_until_released(client, handle.exec_id)
    answers = "q" * 5000 + "\nshort answer\n"
    result = _cli("executions", "input", handle.exec_id, "--interactive", input=answers)
    assert result.exit_code == 0, result.stderr
    assert "invalid: Input for wait 'ask-str'" in result.stderr
    assert "is too large: 4.9 KiB (5002 bytes) as JSON, over the limit of 1 KiB" in result.stderr
    assert handle.wait(timeout=60)["data"] == "short answer"


# --- memory -----------------------------------------------------------------------------

_MEMORY_CHILD = textwrap.dedent(
    """
    import json, os, resource, sys

    from kitaru import flow
    from kitaru.client import KitaruClient

    def peak() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    @flow(cache=False)
    def keep(data: bytes) -> int:
        return len(data)

    size = int(sys.argv[2])
    client = KitaruClient()
    if sys.argv[1] == "run":
        keep.run(b"warm up").wait(timeout=120)  # store, threads, imports
        before = peak()
        handle = keep.run(os.urandom(size))  # the input itself counts
        assert handle.wait(timeout=300) == size
        print(json.dumps({"exec_id": handle.exec_id, "before": before, "peak": peak()}))
    else:
        [inputs] = client.artifacts.list(sys.argv[3], role="flow_inputs")
        before = peak()
        (data,), kwargs = inputs.load()
        assert len(data) == size and kwargs == {}
        print(json.dumps({"before": before, "peak": peak()}))
    """
)


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, FLOW_ENV: "unlimited"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_large_flow_input_costs_one_serialized_copy_to_store_and_to_load(
    any_store: str,
) -> None:
    size = 40_000_000
    run = _child("run", str(size))
    grown = run["peak"] - run["before"]
    # The input plus one serialized copy (~2x); storing it as nested base64 JSON cost ~6x.
    assert grown < 3 * size, f"storing a {size} byte input grew peak RSS by {grown} bytes"

    load = _child("load", str(size), run["exec_id"])
    grown = load["peak"] - load["before"]
    # The stored bytes plus the value read from them (~2x); it was ~8x.
    assert grown < 3 * size, f"loading a {size} byte input grew peak RSS by {grown} bytes"
