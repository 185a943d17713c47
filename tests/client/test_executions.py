"""KitaruClient().executions: get, list, latest, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kitaru import (
    ExecutionStatus,
    FailureOrigin,
    KitaruBackendError,
    KitaruClient,
    KitaruError,
    KitaruUsageError,
    KitaruUserCodeError,
    checkpoint,
    flow,
)
from kitaru.client import CallStatus, Execution
from kitaru.handle import FlowHandle


@checkpoint(type="llm_call")
def ask(question: str) -> dict[str, str]:
    return {"answer": question.upper()}


@checkpoint
def count_words(reply: dict[str, str]) -> int:
    return len(reply["answer"].split())


@checkpoint
def explode(n: int) -> int:
    raise ValueError(f"cannot handle {n}")


@flow
def answer_flow(question: str) -> int:
    return count_words(ask(question))


@flow
def failing_flow(n: int) -> int:
    ask(str(n))
    return explode(n)


@flow
def other_flow(x: int) -> int:
    return x


def _ids(executions: list[Execution]) -> list[str]:
    return [e.exec_id for e in executions]


def test_get_a_completed_execution_exposes_every_field(any_store: str) -> None:
    before = datetime.now(tz=UTC)
    handle = answer_flow.run("hello durable world")
    assert handle.wait(timeout=30) == 3
    after = datetime.now(tz=UTC)

    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.exec_id == handle.exec_id
    assert execution.flow_name == "answer_flow"
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.started_at is not None
    assert execution.ended_at is not None
    assert before <= execution.started_at <= execution.ended_at <= after
    assert execution.started_at.tzinfo is not None
    assert execution.stack_name == "local"
    assert execution.metadata == {}
    assert execution.original_exec_id is None
    assert execution.failure is None
    # The frozen configuration with where each value came from.
    assert execution.config["stack"] == "local"
    assert execution.config["retries"] == 0
    assert execution.config["cache"] is True
    assert execution.config["sources"]["retries"] == "default"

    assert [
        (c.name, c.call_id, c.call_status, c.checkpoint_type) for c in execution.checkpoints
    ] == [
        ("ask", "ask", CallStatus.COMPLETED, "llm_call"),
        ("count_words", "count_words", CallStatus.COMPLETED, None),
    ]
    for call in execution.checkpoints:
        assert [(a.attempt, a.run, a.status) for a in call.attempts] == [(1, 1, "completed")]
        assert call.attempts[0].exception_type is None
        assert call.started_at is not None
        assert call.ended_at is not None
        assert call.started_at <= call.ended_at
        assert len(call.artifacts) == 1
        assert call.artifacts[0].role == "output"
        assert call.artifacts[0].save_type == "step_output"
        assert call.artifacts[0].producing_call == call.name
        assert call.artifacts[0].exec_id == handle.exec_id
        assert call.artifacts[0].call_id == call.call_id
    ask_call, count_call = execution.checkpoints
    assert ask_call.artifacts[0].load() == {"answer": "HELLO DURABLE WORLD"}
    assert count_call.artifacts[0].load() == 3
    assert count_call.output is not None
    assert count_call.output.load() == 3


def test_get_a_failed_execution_exposes_the_failure(any_store: str) -> None:
    handle = failing_flow.run(7)
    with pytest.raises(KitaruUserCodeError):
        handle.wait(timeout=30)

    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.status is ExecutionStatus.FAILED
    assert execution.ended_at is not None
    failure = execution.failure
    assert failure is not None
    assert failure.origin is FailureOrigin.USER_CODE
    assert failure.message == "cannot handle 7"
    assert failure.exception_type == "ValueError"
    assert failure.checkpoint == "explode"
    assert failure.traceback is not None
    assert "ValueError: cannot handle 7" in failure.traceback
    assert "in explode" in failure.traceback

    statuses = {c.call_id: c.status for c in execution.checkpoints}
    assert statuses == {"ask": ExecutionStatus.COMPLETED, "explode": ExecutionStatus.FAILED}
    failed = execution.checkpoints[1]
    assert failed.artifacts == []
    assert len(failed.attempts) == 1
    attempt = failed.attempts[0]
    assert (attempt.attempt, attempt.run, attempt.status) == (1, 1, "failed")
    assert attempt.exception_type == "ValueError"
    assert attempt.message == "cannot handle 7"
    assert attempt.traceback is not None
    assert "cannot handle 7" in attempt.traceback
    assert failed.error is not None
    assert failed.error["exception_type"] == "ValueError"


def test_get_counts_checkpoint_retries_as_attempts(any_store: str) -> None:
    calls = {"n": 0}

    @checkpoint(retries=2)
    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"try {calls['n']}")
        return "ok"

    @flow
    def retrying() -> str:
        return flaky()

    handle = retrying.run()
    assert handle.wait(timeout=30) == "ok"
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert call.status is ExecutionStatus.COMPLETED
    assert call.call_status is CallStatus.COMPLETED
    assert [(a.attempt, a.run, a.status, a.message) for a in call.attempts] == [
        (1, 1, "failed", "try 1"),
        (2, 1, "failed", "try 2"),
        (3, 1, "completed", None),
    ]
    assert call.attempts[0].exception_type == "ConnectionError"


def test_get_numbers_repeated_calls_by_name(any_store: str) -> None:
    @flow
    def repeated() -> list[int]:
        return [count_words(ask(w)) for w in ("a b", "c", "d e f")]

    handle = repeated.run()
    assert handle.wait(timeout=30) == [2, 1, 3]
    execution = KitaruClient().executions.get(handle.exec_id)
    assert [c.call_id for c in execution.checkpoints] == [
        "ask",
        "count_words",
        "ask:2",
        "count_words:2",
        "ask:3",
        "count_words:3",
    ]
    assert [c.artifacts[0].load() for c in execution.checkpoints if c.name == "count_words"] == [
        2,
        1,
        3,
    ]


def test_get_unknown_id_is_a_backend_error_naming_it(any_store: str) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(KitaruBackendError, match=f"Failed to load execution '{missing}'"):
        KitaruClient().executions.get(missing)


def _run_all() -> dict[str, str]:
    """Five finished executions, created one after another."""
    ids: dict[str, str] = {}
    for key, start in [
        ("a1", lambda: answer_flow.run("one")),
        ("f1", lambda: failing_flow.run(1)),
        ("a2", lambda: answer_flow.run("two words")),
        ("o1", lambda: other_flow.run(5)),
        ("a3", lambda: answer_flow.run("three more words")),
    ]:
        handle = start()
        with contextlib.suppress(KitaruUserCodeError):
            handle.wait(timeout=30)
        ids[key] = handle.exec_id
        time.sleep(0.002)  # distinct created_at values
    return ids


def test_list_is_newest_first_and_filters(any_store: str) -> None:
    ids = _run_all()
    executions = KitaruClient().executions

    assert _ids(executions.list()) == [ids[k] for k in ("a3", "o1", "a2", "f1", "a1")]
    assert _ids(executions.list(flow="answer_flow")) == [ids[k] for k in ("a3", "a2", "a1")]
    assert _ids(executions.list(flow="nope")) == []
    assert _ids(executions.list(status="failed")) == [ids["f1"]]
    assert _ids(executions.list(status=ExecutionStatus.FAILED)) == [ids["f1"]]
    assert _ids(executions.list(status="COMPLETED", flow="other_flow")) == [ids["o1"]]
    assert _ids(executions.list(status=["failed", "completed"], limit=2)) == [
        ids["a3"],
        ids["o1"],
    ]
    assert _ids(executions.list(status="running")) == []
    assert _ids(executions.list(limit=2)) == [ids["a3"], ids["o1"]]
    # Every item is a full Execution, as from get().
    listed = executions.list(flow="failing_flow")[0]
    assert listed == executions.get(ids["f1"])


def test_list_paginates(any_store: str) -> None:
    ids = _run_all()
    executions = KitaruClient().executions
    order = [ids[k] for k in ("a3", "o1", "a2", "f1", "a1")]
    assert _ids(executions.list(page=1, size=2)) == order[0:2]
    assert _ids(executions.list(page=2, size=2)) == order[2:4]
    assert _ids(executions.list(page=3, size=2)) == order[4:]
    assert _ids(executions.list(page=4, size=2)) == []
    assert _ids(executions.list(flow="answer_flow", page=2, size=2)) == [ids["a1"]]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": "bogus"},
        {"status": ["completed", "finished"]},
        {"page": 0, "size": 2},
        {"limit": -1},
        {"limit": 0},
        {"size": -3},
        {"size": 0},
        {"page": 2},
        {"limit": 2, "size": 2},
    ],
    ids=[
        "bad-status",
        "bad-status-in-list",
        "page-0",
        "negative-limit",
        "zero-limit",
        "negative-size",
        "size-0",
        "page-without-size",
        "limit-with-size",
    ],
)
def test_list_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(KitaruUsageError) as info:
        KitaruClient().executions.list(**kwargs)  # type: ignore[arg-type]
    if "status" in kwargs:
        # The message lists the valid statuses.
        assert "completed" in str(info.value)
        assert "cancelled" in str(info.value)


def test_latest_returns_the_newest_per_flow(any_store: str) -> None:
    ids = _run_all()
    executions = KitaruClient().executions
    assert executions.latest().exec_id == ids["a3"]
    assert executions.latest(flow="answer_flow").exec_id == ids["a3"]
    assert executions.latest(flow="failing_flow").exec_id == ids["f1"]
    assert executions.latest(flow="other_flow").status is ExecutionStatus.COMPLETED
    with pytest.raises(LookupError, match="nope"):
        executions.latest(flow="nope")


def test_latest_on_an_empty_store_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="No executions"):
        KitaruClient().executions.latest()


def test_page_without_a_size_is_refused(any_store: str) -> None:
    _run_all()
    with pytest.raises(KitaruUsageError, match="size"):
        KitaruClient().executions.list(page=2)


def _slow_call_shown_running(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[FlowHandle, threading.Event, Execution]:
    """A flow whose one call runs until ``release`` is set, started and shown running.

    Calls still running after KITARU_RUNNING_MARK_AFTER seconds get a "running" row.
    """
    monkeypatch.setenv("KITARU_RUNNING_MARK_AFTER", "0.05")
    started, release = threading.Event(), threading.Event()

    @checkpoint
    def slow_call() -> int:
        started.set()
        release.wait(20)
        return 1

    @flow
    def slow() -> int:
        return slow_call()

    handle = slow.run()
    try:
        assert started.wait(10)
        deadline = time.monotonic() + 10
        while True:
            execution = KitaruClient().executions.get(handle.exec_id)
            if execution.checkpoints or time.monotonic() > deadline:
                return handle, release, execution
            time.sleep(0.02)
    except BaseException:
        release.set()
        raise


def test_get_shows_the_checkpoint_in_progress_as_running(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle, release, execution = _slow_call_shown_running(monkeypatch)
    try:
        assert execution.status is ExecutionStatus.RUNNING
        assert [(c.call_id, c.status) for c in execution.checkpoints] == [
            ("slow_call", ExecutionStatus.RUNNING)
        ]
    finally:
        release.set()
        assert handle.wait(timeout=20) == 1
    final = KitaruClient().executions.get(handle.exec_id)
    assert [(c.call_id, c.status, c.call_status) for c in final.checkpoints] == [
        ("slow_call", ExecutionStatus.COMPLETED, CallStatus.COMPLETED)
    ]


def test_cancel_ends_the_call_it_interrupted(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancelled execution shows no call as running: the one in flight ends failed,
    saying so, and its runner records nothing more for it."""
    handle, release, _running = _slow_call_shown_running(monkeypatch)
    client = KitaruClient().executions
    try:
        client.cancel(handle.exec_id)
    finally:
        release.set()
    with pytest.raises(KitaruError, match="cancel"):
        handle.wait(timeout=20)
    final = client.get(handle.exec_id)
    assert final.status is ExecutionStatus.CANCELLED
    (call,) = final.checkpoints
    assert (call.call_id, call.status, call.call_status) == (
        "slow_call",
        ExecutionStatus.FAILED,
        CallStatus.FAILED,
    )
    assert call.ended_at is not None
    assert call.failure is not None
    assert "cancelled while this call was running" in call.failure.message


_RETRY_MARKER: list[Path] = []


@checkpoint
def _first() -> int:
    return 1


@checkpoint
def _second() -> int:
    if _RETRY_MARKER and _RETRY_MARKER[0].exists():
        raise RuntimeError("planned")
    return 2


@flow(retries=0)
def _two() -> int:
    return _first() + _second()


def test_retry_returns_the_execution_and_its_checkpoints_on_first_use(
    any_store: str, tmp_path: Path
) -> None:
    marker = tmp_path / "fail"
    marker.touch()
    _RETRY_MARKER[:] = [marker]
    handle = _two.run()
    with pytest.raises(KitaruUserCodeError):
        handle.wait()
    marker.unlink()
    restarted = KitaruClient().executions.retry(handle.exec_id)
    assert restarted.exec_id == handle.exec_id
    assert handle.wait() == 3
    # Read when first used, so they show the restarted run's work.
    assert [c.call_id for c in restarted.checkpoints] == ["_first", "_second"]
    assert {a.name for a in restarted.artifacts} >= {"_first", "_second"}
    assert restarted.checkpoints == KitaruClient().executions.get(handle.exec_id).checkpoints


def test_ids_may_be_uuid_objects_or_capitals_and_anything_else_is_a_usage_error(
    any_store: str,
) -> None:
    import uuid

    handle = _flows_for_ids.run(1)
    handle.wait(timeout=30)
    client = KitaruClient()
    assert client.executions.get(uuid.UUID(handle.exec_id)).exec_id == handle.exec_id
    assert client.executions.get(handle.exec_id.upper()).exec_id == handle.exec_id
    artifact = client.artifacts.list(handle.exec_id)[0]
    assert client.artifacts.get(artifact.artifact_id.upper()).artifact_id == artifact.artifact_id
    calls = [
        lambda: client.executions.get(None),  # type: ignore[arg-type]
        lambda: client.executions.retry(7),  # type: ignore[arg-type]
        lambda: client.executions.cancel(["x"]),  # type: ignore[arg-type]
        lambda: client.executions.logs(None),  # type: ignore[arg-type]
        lambda: client.executions.pending_waits(5),  # type: ignore[arg-type]
        lambda: client.executions.input(None, wait="a", value=1),  # type: ignore[arg-type]
        lambda: client.artifacts.get(None),  # type: ignore[arg-type]
        lambda: client.artifacts.list(b"id"),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(KitaruUsageError, match=r"id must be a string \(or a uuid.UUID\)"):
            call()
    assert client.executions.get(handle.exec_id).status is ExecutionStatus.COMPLETED


@checkpoint
def _id_step(x: int) -> int:
    return x


@flow
def _flows_for_ids(x: int) -> int:
    return _id_step(x)
