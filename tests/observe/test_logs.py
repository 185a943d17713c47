"""Captured output: print, stderr and logging records, per call, concurrent, on the terminal."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from pathlib import Path

import pytest

from kitaru import KitaruBackendError, KitaruClient, checkpoint, flow
from kitaru.client import LogEntry
from tests.observe.conftest import RUN_OBS_FLOW, child_env, run_child

log = logging.getLogger("tests.observe.user")


def _logs(exec_id: str, **kwargs: object) -> list[LogEntry]:
    """Every captured line (flow body and checkpoints) unless ``source`` says otherwise."""
    kwargs.setdefault("source", None)
    return KitaruClient().executions.logs(exec_id, **kwargs)  # type: ignore[arg-type]


def _lines(entries: list[LogEntry]) -> list[tuple[str | None, str, str | None, str]]:
    return [(e.call_id, e.stream, e.level, e.message) for e in entries]


# --- what is captured -----------------------------------------------------------------------


@checkpoint
def speaks(x: int) -> int:
    print(f"out {x}")
    print(f"err {x}", file=sys.stderr)
    log.debug("debug %s", x)
    log.info("info %s", x)
    log.warning("warning %s", x)
    log.error("error %s", x)
    try:
        raise ValueError("inner problem")
    except ValueError:
        log.exception("failed %s", x)
    return x


@flow
def speaking_flow(x: int) -> int:
    print("body before")
    value = speaks(x)
    log.warning("body warning")
    print("body after")
    return value


@pytest.fixture
def debug_logger() -> object:
    log.setLevel(logging.DEBUG)
    yield log
    log.setLevel(logging.NOTSET)


def test_print_stderr_and_logging_records_are_stored_per_call(
    any_store: str, debug_logger: object
) -> None:
    handle = speaking_flow.run(7)
    assert handle.wait(timeout=30) == 7
    entries = _logs(handle.exec_id)
    assert [(c, s, lv, m.split("\n")[0]) for c, s, lv, m in _lines(entries)] == [
        (None, "stdout", None, "body before"),
        ("speaks", "stdout", None, "out 7"),
        ("speaks", "stderr", None, "err 7"),
        ("speaks", "logging", "DEBUG", "debug 7"),
        ("speaks", "logging", "INFO", "info 7"),
        ("speaks", "logging", "WARNING", "warning 7"),
        ("speaks", "logging", "ERROR", "error 7"),
        ("speaks", "logging", "ERROR", "failed 7"),
        (None, "logging", "WARNING", "body warning"),
        (None, "stdout", None, "body after"),
    ]
    by_message = {e.message.split("\n")[0]: e for e in entries}
    exc_entry = by_message["failed 7"]
    assert exc_entry.level == "ERROR"
    assert exc_entry.call_id == "speaks"
    assert "ValueError: inner problem" in exc_entry.message  # the traceback is kept
    assert by_message["warning 7"].logger == "tests.observe.user"
    assert by_message["body warning"].call_id is None
    assert by_message["body warning"].checkpoint_name is None
    assert by_message["body warning"].source == "runner"
    assert by_message["warning 7"].source == "step"
    assert entries[-1].message == "body after"
    assert entries[-1].call_id is None
    assert all(e.exec_id == handle.exec_id for e in entries)
    assert all(e.checkpoint_name == ("speaks" if e.call_id else None) for e in entries)
    stamps = [e.logged_at for e in entries]
    assert all(s is not None and s.tzinfo is not None for s in stamps)
    assert stamps == sorted(stamps)  # type: ignore[type-var]
    assert [e.timestamp for e in entries] == [s.isoformat() for s in stamps]  # type: ignore[union-attr]
    assert [e.id for e in entries] == sorted({e.id for e in entries})


def test_lines_still_reach_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    handle = speaking_flow.run(8)
    handle.wait(timeout=30)
    captured = capsys.readouterr()
    assert "body before\nout 8\nbody after\n" in captured.out
    assert "err 8\n" in captured.err
    assert len(_logs(handle.exec_id)) >= 6


@checkpoint
def says_nothing(x: int) -> int:
    return x


@flow
def mixed(x: int) -> int:
    print("one")
    says_nothing(x)
    return x


def test_output_outside_any_execution_is_not_captured() -> None:
    print("before any flow")
    handle = mixed.run(1)
    print("while it runs, from the caller")
    handle.wait(timeout=30)
    print("after it")
    assert [e.message for e in _logs(handle.exec_id)] == ["one"]


# --- concurrency -------------------------------------------------------------------------------


@checkpoint
def worker_step(tag: str, n: int) -> int:
    for i in range(n):
        print(f"{tag} line {i}")
        log.warning("%s record %d", tag, i)
    return n


@flow
def parallel_flow(tag: str) -> int:
    print(f"{tag} body")
    futures = [worker_step.submit(f"{tag}/c{k}", 20, id=f"c{k}") for k in range(4)]
    return sum(f.result() for f in futures)


def test_concurrent_checkpoints_of_several_executions_each_get_their_own_lines(
    any_store: str,
) -> None:
    tags = [f"e{i}" for i in range(4)]
    handles: dict[str, object] = {}
    errors: list[BaseException] = []

    def run(tag: str) -> None:
        try:
            handle = parallel_flow.run(tag)
            handles[tag] = handle
            handle.wait(timeout=60)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in tags]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors, errors
    for tag in tags:
        exec_id = handles[tag].exec_id  # type: ignore[attr-defined]
        entries = _logs(exec_id)
        assert len(entries) == 1 + 4 * 20 * 2
        for entry in entries:
            assert entry.exec_id == exec_id
            assert entry.message.startswith(f"{tag} ") or entry.message.startswith(f"{tag}/")
            if entry.call_id is None:
                assert entry.message == f"{tag} body"
            else:
                assert entry.message.startswith(f"{tag}/{entry.call_id} "), entry
                assert entry.checkpoint_name == "worker_step"
        for k in range(4):
            mine = [e.message for e in entries if e.call_id == f"c{k}"]
            expected = [
                m for i in range(20) for m in (f"{tag}/c{k} line {i}", f"{tag}/c{k} record {i}")
            ]
            assert mine == expected  # complete and in order


@checkpoint
async def async_step(tag: str) -> str:
    print(f"{tag} before await")
    await asyncio.sleep(0.01)
    print(f"{tag} after await")
    return tag


@flow
async def async_flow() -> list[str]:
    return list(
        await asyncio.gather(
            async_step("a", id="a"),  # type: ignore[call-arg]
            async_step("b", id="b"),  # type: ignore[call-arg]
        )
    )


def test_interleaved_async_checkpoints_keep_their_lines_apart() -> None:
    handle = async_flow.run()
    assert handle.wait(timeout=30) == ["a", "b"]
    entries = _logs(handle.exec_id)
    assert {(e.call_id, e.message) for e in entries} == {
        ("a", "a before await"),
        ("a", "a after await"),
        ("b", "b before await"),
        ("b", "b after await"),
    }


# --- reading them back --------------------------------------------------------------------------


@checkpoint
def numbered(x: int) -> int:
    for i in range(3):
        print(f"numbered {x}.{i}")
    return x


@flow
def numbered_flow() -> int:
    print("start")
    numbered(1)
    numbered(2)
    print("end")
    return 0


def test_logs_by_checkpoint_call_id_limit_and_after_id(any_store: str) -> None:
    handle = numbered_flow.run()
    handle.wait(timeout=30)
    exec_id = handle.exec_id
    everything = _logs(exec_id)
    assert [e.message for e in everything] == [
        "start",
        *[f"numbered 1.{i}" for i in range(3)],
        *[f"numbered 2.{i}" for i in range(3)],
        "end",
    ]
    by_name = _logs(exec_id, checkpoint="numbered")
    assert [e.call_id for e in by_name] == ["numbered"] * 3 + ["numbered:2"] * 3
    by_call = _logs(exec_id, checkpoint="numbered:2")
    assert [e.message for e in by_call] == [f"numbered 2.{i}" for i in range(3)]
    assert [e.message for e in _logs(exec_id, limit=2)] == ["start", "numbered 1.0"]
    assert [e.message for e in _logs(exec_id, checkpoint="numbered", limit=1)] == ["numbered 1.0"]
    after = _logs(exec_id, after_id=everything[5].id)
    assert [e.message for e in after] == [e.message for e in everything[6:]]
    assert _logs(exec_id, checkpoint="nope") == []
    # 0.21's sources: "step" (the default) is checkpoint lines, "runner" the flow body's.
    client = KitaruClient()
    assert client.executions.logs(exec_id) == [e for e in everything if e.call_id is not None]
    assert client.executions.logs(exec_id, source="step") == everything[1:-1]
    assert [e.message for e in client.executions.logs(exec_id, source="runner")] == [
        "start",
        "end",
    ]
    assert [e.message for e in client.executions.logs(exec_id, source="step", limit=1)] == [
        "numbered 1.0"
    ]
    with pytest.raises(KitaruBackendError, match="Failed to load execution 'no-such-execution'"):
        _logs("no-such-execution")


# --- in a real process: the terminal, the switch ---------------------------------------------


def _child_lines(exec_id: str) -> list[tuple[str | None, str, str | None, str]]:
    return _lines(_logs(exec_id))


def test_a_process_shows_and_stores_each_line_once(state_dir: Path) -> None:
    child = run_child(["-c", RUN_OBS_FLOW, "noisy", "3"], env=child_env(state_dir))
    assert child.returncode == 0, child.stderr
    exec_id = KitaruClient().executions.latest().exec_id  # the child may print its id late
    # The terminal still shows everything, the warning through Python's last resort.
    # (The main thread prints the id, then its newline, while the flow runs: either may
    # land between a print's text and its newline, so both are taken out first.)
    lines = [line for line in child.stdout.replace(exec_id, "", 1).splitlines() if line]
    assert lines[:2] == ["noisy body", "chatty out 3"], child.stdout
    assert "chatty err 3\n" in child.stderr
    assert "chatty warning 3\n" in child.stderr
    # Stored once each: the printed form of the warning is not a second stderr line.
    assert _child_lines(exec_id) == [
        (None, "stdout", None, "noisy body"),
        ("chatty", "stdout", None, "chatty out 3"),
        ("chatty", "stderr", None, "chatty err 3"),
        ("chatty", "logging", "WARNING", "chatty warning 3"),
    ]


def test_kitaru_capture_logs_0_turns_capture_off(state_dir: Path) -> None:
    env = child_env(state_dir, KITARU_CAPTURE_LOGS="0")
    child = run_child(["-c", RUN_OBS_FLOW, "noisy", "4"], env=env)
    assert child.returncode == 0, child.stderr
    exec_id = KitaruClient().executions.latest().exec_id  # the child may print its id late
    assert "chatty out 4" in child.stdout  # the terminal is unaffected
    assert "chatty warning 4" in child.stderr
    assert _logs(exec_id) == []
    assert KitaruClient().executions.get(exec_id).status.value == "completed"


# --- known gaps (see the report of issue 6) -----------------------------------------------------


@checkpoint
def writes_partial_line() -> int:
    sys.stdout.write("progress 50%")  # no newline before the checkpoint returns
    return 1


@flow
def partial_line_flow() -> int:
    value = writes_partial_line()
    print("body line")
    sys.stdout.write("body tail without newline")
    return value


def test_a_line_without_newline_stays_with_its_call() -> None:
    handle = partial_line_flow.run()
    handle.wait(timeout=30)
    assert [(e.call_id, e.message) for e in _logs(handle.exec_id)] == [
        ("writes_partial_line", "progress 50%"),
        (None, "body line"),
        (None, "body tail without newline"),
    ]


@checkpoint
def logs_then_prints_same_text() -> int:
    log.warning("same text")
    print("same text")
    return 1


@flow
def echo_flow() -> int:
    return logs_then_prints_same_text()


def test_a_print_after_a_record_with_the_same_text_is_stored() -> None:
    handle = echo_flow.run()
    handle.wait(timeout=30)
    assert [(e.stream, e.message) for e in _logs(handle.exec_id)] == [
        ("logging", "same text"),
        ("stdout", "same text"),
    ]


def test_capture_can_be_turned_off_after_a_first_run(monkeypatch: pytest.MonkeyPatch) -> None:
    mixed.run(1).wait(timeout=30)
    monkeypatch.setenv("KITARU_CAPTURE_LOGS", "0")
    handle = mixed.run(2)
    handle.wait(timeout=30)
    assert _logs(handle.exec_id) == []
