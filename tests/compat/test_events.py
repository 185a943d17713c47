"""Kitaru 0.21's event API: ``kitaru.progress``, ``kitaru.events``, ``executions.events()``.

Every test that stores events runs on SQLite and on PostgreSQL (``any_store``).
Live tests follow an execution that is really running (a runner thread of this
process, or an isolated checkpoint's own process) and wait on conditions with
generous timeouts, never on the runner's speed.
"""

from __future__ import annotations

import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru import (
    ExecutionEvent,
    KitaruClient,
    KitaruContextError,
    KitaruError,
    KitaruUsageError,
    checkpoint,
    flow,
)
from kitaru._store import Store
from kitaru._store._events import EventRow

STARTED = "kitaru.checkpoint.started"
PROGRESS = "kitaru.checkpoint.progress"
RETURNED = "kitaru.checkpoint.returned"
FAILED = "kitaru.checkpoint.failed"
TIMEOUT = 60.0


def _events(exec_id: str, **filters: Any) -> list[ExecutionEvent]:
    return list(KitaruClient().executions.events(exec_id, **filters))


def _kinds(events: list[ExecutionEvent]) -> list[tuple[str | None, str, int | None]]:
    return [(e.checkpoint_id, e.kind, e.index) for e in events]


# --- the public surface -----------------------------------------------------------------------


def test_the_event_api_has_the_0_21_names_and_fields() -> None:
    import dataclasses

    import kitaru.client
    import kitaru.events

    assert kitaru.progress is kitaru.events.progress
    assert kitaru.ExecutionEvent is kitaru.client.ExecutionEvent
    for name in ("events", "progress", "ExecutionEvent", "current_execution_id"):
        assert name in kitaru.__all__
    assert "ExecutionEvent" in kitaru.client.__all__
    fields = [f.name for f in dataclasses.fields(ExecutionEvent)]
    assert fields[:9] == [
        "exec_id",
        "kind",
        "payload",
        "correlation_id",
        "index",
        "cursor",
        "checkpoint_id",
        "checkpoint_name",
        "step_name",
    ]
    assert kitaru.events.CHECKPOINT_STARTED_KIND == STARTED
    assert kitaru.events.CHECKPOINT_PROGRESS_KIND == PROGRESS
    assert kitaru.events.CHECKPOINT_RETURNED_KIND == RETURNED
    assert kitaru.events.CHECKPOINT_FAILED_KIND == FAILED


# --- what a run publishes -----------------------------------------------------------------------


@checkpoint(type="tool_call")
def reports(n: int) -> int:
    kitaru.progress("Collecting notes", percent=0.25, documents=n)
    kitaru.events.publish("my_app.batch.done", {"batch": n}, message="first batch")
    kitaru.progress("Writing")
    return n * 2


@flow
def reporting_flow(n: int) -> int:
    return reports(n) + reports(n + 1)


def test_a_run_records_lifecycle_and_published_events_in_order(any_store: str) -> None:
    handle = reporting_flow.run(3)
    assert handle.wait() == 14
    events = _events(handle.exec_id)
    assert _kinds(events) == [
        ("reports", STARTED, 0),
        ("reports", PROGRESS, 1),
        ("reports", "my_app.batch.done", 2),
        ("reports", PROGRESS, 3),
        ("reports", RETURNED, 4),
        ("reports:2", STARTED, 0),
        ("reports:2", PROGRESS, 1),
        ("reports:2", "my_app.batch.done", 2),
        ("reports:2", PROGRESS, 3),
        ("reports:2", RETURNED, 4),
    ]
    assert [int(e.cursor or 0) for e in events] == list(range(1, 11))
    first, second = events[:5], events[5:]
    # One correlation id per checkpoint run, shared by all its events.
    assert len({e.correlation_id for e in first}) == 1
    assert len({e.correlation_id for e in second}) == 1
    assert first[0].correlation_id != second[0].correlation_id
    assert (first[0].correlation_id or "").startswith("kitaru.checkpoint:reports:")
    for event in events:
        assert event.exec_id == handle.exec_id
        assert event.checkpoint_name == "reports"
        assert event.step_name == event.checkpoint_id
        assert event.timestamp is not None
        assert event.payload["kitaru"] == {
            "source": "kitaru",
            "execution_id": handle.exec_id,
            "checkpoint_id": event.checkpoint_id,
            "checkpoint_name": "reports",
            "checkpoint_type": "tool_call",
            "correlation_id": event.correlation_id,
        }
    payloads = [{k: v for k, v in e.payload.items() if k != "kitaru"} for e in first]
    assert payloads == [
        {"status": "started"},
        {"message": "Collecting notes", "data": {"documents": 3, "percent": 0.25}},
        {"message": "first batch", "data": {"batch": 3}},
        {"message": "Writing"},
        {"status": "returned"},
    ]


_attempts = {"n": 0}


@checkpoint(retries=1)
def leaky() -> None:
    _attempts["n"] += 1
    kitaru.progress(f"attempt {_attempts['n']}")
    raise RuntimeError("api_key=sk-very-secret")


@flow
def leaky_flow() -> None:
    leaky()


def test_each_attempt_is_its_own_lane_and_failures_do_not_leak_the_message(
    any_store: str,
) -> None:
    _attempts["n"] = 0
    handle = leaky_flow.run()
    with pytest.raises(KitaruError):
        handle.wait()
    events = _events(handle.exec_id)
    assert [(e.kind, e.index) for e in events] == [
        (STARTED, 0),
        (PROGRESS, 1),
        (FAILED, 2),
        (STARTED, 0),
        (PROGRESS, 1),
        (FAILED, 2),
    ]
    assert events[0].correlation_id == events[2].correlation_id
    assert events[0].correlation_id != events[3].correlation_id
    failed = events[2].payload
    assert failed["status"] == "failed"
    assert failed["error_type"] == "RuntimeError"
    assert "secret" not in str([e.payload for e in events])
    # The durable failure record still has the whole message.
    from kitaru._backend import get_backend

    (call,) = get_backend().store.calls(handle.exec_id)
    assert call.error is not None
    assert "sk-very-secret" in call.error["message"]


@checkpoint
def plain(x: int) -> int:
    return x + 1


@flow
def plain_flow(x: int) -> int:
    return plain(x)


def test_calls_answered_from_the_cache_publish_nothing(any_store: str) -> None:
    first = plain_flow.run(1)
    assert first.wait() == 2
    second = plain_flow.run(1)
    assert second.wait() == 2
    assert [e.kind for e in _events(first.exec_id)] == [STARTED, RETURNED]
    assert KitaruClient().executions.get(second.exec_id).checkpoints[0].status.value in (
        "completed",
        "cached",
    )
    assert _events(second.exec_id) == []


@checkpoint
def oddly_named() -> int:
    kitaru.events.publish("note\udcff", {"a": 1}, correlation_id="co\x00rr\udcffid")
    kitaru.events.publish("nul", {"a": 2}, correlation_id="nul\x00only")
    kitaru.events.publish("plain", {"a": 3}, correlation_id="ascii-id")
    return 1


@flow
def odd_text_flow() -> int:
    return oddly_named()


def test_text_no_store_holds_is_stored_escaped(any_store: str) -> None:
    """NUL (PostgreSQL refuses it) and lone surrogates (no store holds them) in a kind
    or a correlation id come back escaped; plain text as it was (call ids refuse both)."""
    handle = odd_text_flow.run()
    assert handle.wait() == 1
    events = _events(handle.exec_id)
    assert [(e.kind, e.correlation_id) for e in events[1:4]] == [
        ("note\\udcff", "co\\x00rr\\udcffid"),
        ("nul", "nul\\x00only"),
        ("plain", "ascii-id"),
    ]
    assert {e.checkpoint_id for e in events} == {"oddly_named"}


# --- filters and cursors --------------------------------------------------------------------------


def test_filters_and_since_cursor(any_store: str) -> None:
    handle = reporting_flow.run(1)
    handle.wait()
    everything = _events(handle.exec_id)
    assert len(everything) == 10
    progress = _events(handle.exec_id, kinds=[PROGRESS])
    assert [e.cursor for e in progress] == [e.cursor for e in everything if e.kind == PROGRESS]
    two_kinds = _events(handle.exec_id, kinds=[STARTED, RETURNED])
    assert [e.kind for e in two_kinds] == [STARTED, RETURNED, STARTED, RETURNED]
    by_call = _events(handle.exec_id, checkpoint="reports:2")
    assert by_call == everything[5:]
    assert _events(handle.exec_id, checkpoint="reports") == everything  # name matches both
    assert _events(handle.exec_id, checkpoint="nothing") == []
    lane = everything[6].correlation_id
    assert _events(handle.exec_id, correlation_ids=[lane]) == everything[5:]
    assert _events(handle.exec_id, since=everything[3].cursor) == everything[4:]
    assert _events(handle.exec_id, since=everything[-1].cursor) == []
    combined = _events(handle.exec_id, kinds=[PROGRESS], checkpoint="reports", since="5")
    assert [e.cursor for e in combined] == ["7", "9"]


def test_bad_reader_arguments_are_usage_errors_before_iterating(any_store: str) -> None:
    handle = plain_flow.run(5)
    handle.wait()
    executions = KitaruClient().executions
    for kwargs in (
        {"since": "abc"},
        {"since": "-1"},
        {"since": True},
        {"kinds": [""]},
        {"kinds": [3]},
        {"correlation_ids": [None]},
        {"checkpoint": " "},
    ):
        with pytest.raises(KitaruUsageError):
            executions.events(handle.exec_id, **kwargs)
    with pytest.raises(KitaruError, match="no-such-exec"):
        executions.events("no-such-exec")


# --- publishing: validation and contexts -------------------------------------------------------


def _outcome(fn: Any) -> str:
    try:
        fn()
    except Exception as exc:
        return type(exc).__name__
    return "ok"


_checks: dict[str, str] = {}


@checkpoint
def misuses() -> None:
    # Typed as Any: these calls pass wrong types on purpose.
    publish: Any = kitaru.events.publish
    progress: Any = kitaru.progress
    cases: dict[str, Any] = {
        **{f"reserved {k}": (lambda k=k: publish(k)) for k in ("cursor", "end", "error")},
        "reserved gap": lambda: publish("gap"),
        "reserved system padded": lambda: publish(" system "),
        "blank kind": lambda: publish("  "),
        "kind with newline": lambda: publish("a\nb"),
        "kind not a string": lambda: publish(7),
        "kind too long": lambda: publish("k" * 300),
        "payload not a mapping": lambda: publish("ok.kind", [1, 2]),
        "message not a string": lambda: publish("ok.kind", message=3),
        "negative index": lambda: publish("ok.kind", index=-1),
        "bool index": lambda: publish("ok.kind", index=True),
        "blank correlation": lambda: publish("ok.kind", correlation_id=" "),
        "unserializable keys": lambda: publish("ok.kind", {(1, 2): "tuple key"}),
        "blank progress": lambda: progress(" "),
        "progress not a string": lambda: progress(None),
        "percent above 1": lambda: progress("x", percent=1.5),
        "percent below 0": lambda: progress("x", percent=-0.1),
        "percent nan": lambda: progress("x", percent=math.nan),
        "percent bool": lambda: progress("x", percent=True),
        "percent text": lambda: progress("x", percent="50%"),
        "good index 5": lambda: publish("ok.kind", index=5),
        "index behind the counter": lambda: publish("ok.kind", index=2),
        "own correlation": lambda: publish("ok.kind", correlation_id="lane-b"),
        "percent 0": lambda: progress("start", percent=0),
        "percent 1": lambda: progress("done", percent=1),
    }
    for name, case in cases.items():
        _checks[name] = _outcome(case)


@flow
def misuse_flow() -> None:
    misuses()
    _checks["publish in flow body"] = _outcome(lambda: kitaru.events.publish("x.y"))
    _checks["progress in flow body"] = _outcome(lambda: kitaru.progress("x"))
    _checks["flush in flow body"] = str(kitaru.events.flush())


def test_bad_events_are_usage_errors_and_context_is_checked(any_store: str) -> None:
    _checks.clear()
    handle = misuse_flow.run()
    handle.wait()
    usage = "KitaruUsageError"
    assert _checks == {
        "reserved cursor": usage,
        "reserved end": usage,
        "reserved error": usage,
        "reserved gap": usage,
        "reserved system padded": usage,
        "blank kind": usage,
        "kind with newline": usage,
        "kind not a string": usage,
        "kind too long": usage,
        "payload not a mapping": usage,
        "message not a string": usage,
        "negative index": usage,
        "bool index": usage,
        "blank correlation": usage,
        "unserializable keys": usage,
        "blank progress": usage,
        "progress not a string": usage,
        "percent above 1": usage,
        "percent below 0": usage,
        "percent nan": usage,
        "percent bool": usage,
        "percent text": usage,
        "good index 5": "ok",
        "index behind the counter": usage,
        "own correlation": "ok",
        "percent 0": "ok",
        "percent 1": "ok",
        "publish in flow body": "KitaruContextError",
        "progress in flow body": "KitaruContextError",
        "flush in flow body": "True",
    }
    events = _events(handle.exec_id)
    # Refused events left no trace; accepted ones kept the counter moving.
    assert [(e.kind, e.index, e.correlation_id == events[0].correlation_id) for e in events] == [
        (STARTED, 0, True),
        ("ok.kind", 5, True),
        ("ok.kind", 6, False),
        (PROGRESS, 7, True),
        (PROGRESS, 8, True),
        (RETURNED, 9, True),
    ]
    assert events[2].correlation_id == "lane-b"
    assert events[2].payload["kitaru"]["correlation_id"] == "lane-b"
    assert [e.payload["data"]["percent"] for e in events[3:5]] == [0.0, 1.0]


def test_publishing_outside_any_execution_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError, match="inside a @checkpoint"):
        kitaru.events.publish("my.kind")
    with pytest.raises(KitaruContextError, match="inside a @checkpoint"):
        kitaru.progress("hello", percent=0.5)
    # Validation of the kind comes first, as in 0.21: a reserved kind is a usage error.
    with pytest.raises(KitaruUsageError, match="reserved"):
        kitaru.events.publish("end")
    assert kitaru.events.flush() is True
    with pytest.raises(KitaruUsageError):
        kitaru.events.flush(timeout=-1)


def test_current_execution_id_in_body_and_checkpoint(any_store: str) -> None:
    seen: dict[str, str | None] = {}

    @checkpoint
    def where() -> None:
        seen["checkpoint"] = kitaru.current_execution_id()

    @flow
    def where_flow() -> None:
        seen["body"] = kitaru.current_execution_id()
        where()

    assert kitaru.current_execution_id() is None
    handle = where_flow.run()
    handle.wait()
    assert seen == {"body": handle.exec_id, "checkpoint": handle.exec_id}


# --- following a running execution ------------------------------------------------------------


class _Reader:
    """Consumes an event iterator on a thread, so a test can wait with a timeout."""

    def __init__(self, iterator: Iterator[ExecutionEvent]) -> None:
        self.queue: queue.Queue[ExecutionEvent | BaseException | None] = queue.Queue()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iterator,), daemon=True)
        self._thread.start()

    def _run(self, iterator: Iterator[ExecutionEvent]) -> None:
        try:
            for event in iterator:
                self.queue.put(event)
        except BaseException as exc:
            self.queue.put(exc)
        finally:
            self.done.set()
            self.queue.put(None)

    def next(self) -> ExecutionEvent | None:
        item = self.queue.get(timeout=TIMEOUT)
        if isinstance(item, BaseException):
            raise item
        return item

    def rest(self) -> list[ExecutionEvent]:
        out = []
        while (item := self.next()) is not None:
            out.append(item)
        return out


_gate = threading.Event()


@checkpoint
def slow_step() -> str:
    kitaru.progress("waiting for the gate", flush=True)
    assert _gate.wait(TIMEOUT), "the test never opened the gate"
    kitaru.progress("through the gate")
    return "done"


@flow
def gated_flow() -> str:
    return slow_step()


def test_events_are_followed_live_until_the_execution_finishes(any_store: str) -> None:
    _gate.clear()
    handle = gated_flow.run()
    try:
        reader = _Reader(KitaruClient().executions.events(handle.exec_id))
        started = reader.next()
        waiting = reader.next()
        assert started is not None
        assert started.kind == STARTED
        assert waiting is not None
        assert waiting.payload["message"] == "waiting for the gate"
        # Seen while the checkpoint is still blocked: live, not after the fact.
        assert handle.status.value == "running"
        assert not reader.done.is_set()
    finally:
        _gate.set()
    assert handle.wait() == "done"
    rest = reader.rest()
    assert [(e.kind, e.payload.get("message")) for e in rest] == [
        (PROGRESS, "through the gate"),
        (RETURNED, None),
    ]
    assert reader.done.wait(TIMEOUT)


def test_a_reader_resumes_from_a_cursor_while_the_execution_runs(any_store: str) -> None:
    _gate.clear()
    handle = gated_flow.run()
    try:
        first = _Reader(KitaruClient().executions.events(handle.exec_id))
        first.next()
        cursor = first.next()
        assert cursor is not None
    finally:
        _gate.set()
    handle.wait()
    resumed = _Reader(KitaruClient().executions.events(handle.exec_id, since=cursor.cursor))
    assert [e.kind for e in resumed.rest()] == [PROGRESS, RETURNED]
    assert [e.kind for e in first.rest()] == [PROGRESS, RETURNED]


def test_follow_false_reads_what_is_stored_and_stops(any_store: str) -> None:
    _gate.clear()
    handle = gated_flow.run()
    try:
        live = _Reader(KitaruClient().executions.events(handle.exec_id))
        live.next()
        live.next()  # the flushed progress event is stored
        snapshot = _Reader(KitaruClient().executions.events(handle.exec_id, follow=False))
        assert [e.kind for e in snapshot.rest()] == [STARTED, PROGRESS]
    finally:
        _gate.set()
    handle.wait()


# --- other processes --------------------------------------------------------------------------


@checkpoint(runtime="isolated")
def isolated_step(n: int) -> int:
    kitaru.progress("in the child", n=n)
    kitaru.events.publish("child.event", {"pid_differs": True}, flush=True)
    return n + 1


@flow
def isolated_flow(n: int) -> int:
    return isolated_step(n)


def test_an_isolated_checkpoint_publishes_from_its_own_process(any_store: str) -> None:
    handle = isolated_flow.run(1)
    assert handle.wait() == 2
    events = _events(handle.exec_id)
    assert [(e.kind, e.index) for e in events] == [
        (STARTED, 0),
        (PROGRESS, 1),
        ("child.event", 2),
        (RETURNED, 3),
    ]
    assert len({e.correlation_id for e in events}) == 1
    assert {e.checkpoint_id for e in events} == {"isolated_step"}


def test_an_execution_running_in_another_process_is_followed_live(
    any_store: str, tmp_path: Path
) -> None:
    gate, id_file = tmp_path / "gate", tmp_path / "exec_id"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.compat._event_child", str(gate), str(id_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not id_file.exists() or not id_file.read_text():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child never started its execution"
            time.sleep(0.02)
        reader = _Reader(KitaruClient().executions.events(id_file.read_text()))
        first, second = reader.next(), reader.next()
        assert first is not None
        assert second is not None
        assert [first.kind, second.payload.get("message")] == [
            STARTED,
            "waiting for the gate file",
        ]
        assert not reader.done.is_set()  # the checkpoint is still blocked in the child
        gate.write_text("open")
        assert [e.kind for e in reader.rest()] == [PROGRESS, RETURNED]
        out, err = child.communicate(timeout=TIMEOUT)
        assert child.returncode == 0, err
        assert out.strip().endswith("done")
    finally:
        gate.write_text("open")
        if child.poll() is None:
            child.kill()
            child.communicate()


def test_concurrent_writers_never_share_or_skip_positions(store_url: str) -> None:
    """Writers with their own connections (as separate processes have) racing on one
    execution's stream: every event is stored once, positions are 1..N, and each
    writer's events keep their order."""
    exec_id = "00000000-0000-0000-0000-00000000e7e7"
    writers, batches, per_batch = 4, 15, 3
    stores = [Store(store_url) for _ in range(writers)]
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            barrier.wait(TIMEOUT)
            for b in range(batches):
                stores[w].insert_events(
                    [
                        EventRow(exec_id, "race", "{}", time.time(), None, None, f"w{w}", i)
                        for i in range(b * per_batch, (b + 1) * per_batch)
                    ]
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert not errors
    stored = stores[0].events(exec_id)
    assert [e.seq for e in stored] == list(range(1, writers * batches * per_batch + 1))
    for w in range(writers):
        mine = [e.index for e in stored if e.correlation_id == f"w{w}"]
        assert mine == list(range(batches * per_batch))
    for store in stores:
        store.dispose()


def test_deleting_an_execution_deletes_its_events(any_store: str) -> None:
    handle = plain_flow.run(10)
    handle.wait()
    other = plain_flow.run(20)
    other.wait()
    assert len(_events(handle.exec_id)) == 2
    KitaruClient().executions.delete(handle.exec_id)
    from kitaru._backend import get_backend

    assert get_backend().store.events(handle.exec_id) == []
    assert len(_events(other.exec_id)) == 2
