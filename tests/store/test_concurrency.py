"""Concurrent writers (threads and processes) and durability across a killed process."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kitaru._store import Store
from kitaru._store.records import CallStatus, ExecutionStatus, StaleOwnerError

from ._support import Records, finish, release_together

Spawn = Callable[..., subprocess.Popen[str]]

THREADS = 4
CALLS_PER_THREAD = 50


def _slow_first_transaction(direct: Any, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The first write transaction of SQLite's group commit takes ``seconds`` longer."""
    transaction, calls = direct._transaction, []

    def slow_first(action: str, op: Any, *, implicit: bool = False) -> Any:
        calls.append(action)
        if len(calls) == 1:
            time.sleep(seconds)
        return transaction(action, op, implicit=implicit)

    monkeypatch.setattr(direct, "_transaction", slow_first)


def _batch_sizes(direct: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the queued batches the group commit commits (a lone write is none)."""
    commit, sizes = direct._commit, []

    def counted(batch: list[Any], action: str) -> None:
        sizes.append(len(batch))
        commit(batch, action)

    monkeypatch.setattr(direct, "_commit", counted)
    return sizes


def test_threads_recording_calls_on_one_store(store: Store, records: Records) -> None:
    executions = [records.execution() for _ in range(THREADS)]
    for execution in executions:
        store.create_execution(execution)
    errors: list[BaseException] = []
    reads = 0
    writers_done = threading.Event()
    start = threading.Barrier(THREADS + 1)

    def writer(exec_id: str) -> None:
        try:
            local = Records()
            start.wait()
            for seq in range(CALLS_PER_THREAD):
                call_id = f"step:{seq + 1}"
                artifact = local.artifact(exec_id, call_id, inline_data=f"{seq}".encode())
                store.record_call(
                    local.call(exec_id, call_id, seq, artifact=artifact),
                    artifact=artifact,
                    attempt=local.attempt(exec_id, call_id),
                )
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        nonlocal reads
        try:
            start.wait()
            while not writers_done.is_set():
                store.calls(executions[0].id)
                store.list_executions(limit=5)
                reads += 1
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(e.id,)) for e in executions]
    reading = threading.Thread(target=reader)
    for thread in [*writers, reading]:
        thread.start()
    for thread in writers:
        thread.join(timeout=60)
    writers_done.set()
    reading.join(timeout=60)

    assert errors == []
    assert reads > 0
    for execution in executions:
        calls = store.calls(execution.id)
        assert [c.seq for c in calls] == list(range(CALLS_PER_THREAD))
        assert all(c.status is CallStatus.COMPLETED for c in calls)
        assert [c.artifact.inline_data if c.artifact else None for c in calls] == [
            f"{seq}".encode() for seq in range(CALLS_PER_THREAD)
        ]
        assert len(store.attempts(execution.id)) == CALLS_PER_THREAD
        assert len(store.list_artifacts(exec_id=execution.id)) == CALLS_PER_THREAD


def test_concurrent_fenced_writes_land_or_are_refused_one_by_one(
    store: Store, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many executions' runners writing at once (on SQLite they share commits, each write
    in its own savepoint): every write of a current owner lands, and every write of a
    runner that lost its execution is refused alone, without taking others with it."""
    executions = [
        records.execution(status=ExecutionStatus.RUNNING, fence=1, run_count=1)
        for _ in range(THREADS * 2)
    ]
    for execution in executions:
        store.create_execution(execution)
    stale = executions[0]
    taken = store.claim(
        stale.id,
        owner="runner-b",
        lease_seconds=30,
        from_status=[ExecutionStatus.RUNNING],
        expected_fence=1,
        require_expired_lease=False,
    )
    assert taken is not None
    assert taken.fence == 2
    batches: list[int] = []
    direct = getattr(store, "_sqlite", None)
    if direct is not None:  # slow the first commit so the other writers queue behind it
        _slow_first_transaction(direct, monkeypatch, 0.2)
        batches = _batch_sizes(direct, monkeypatch)
    refused: dict[str, int] = {e.id: 0 for e in executions}
    errors: list[BaseException] = []
    start = threading.Barrier(len(executions))

    def runner(exec_id: str) -> None:
        local = Records()
        try:
            start.wait()
            for seq in range(10):
                call_id = f"step:{seq + 1}"
                artifact = local.artifact(exec_id, call_id)
                try:
                    store.record_call(
                        local.call(exec_id, call_id, seq, artifact=artifact),
                        artifact=artifact,
                        fence=1,
                    )
                except StaleOwnerError:
                    refused[exec_id] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(e.id,)) for e in executions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert refused == {e.id: 10 if e is stale else 0 for e in executions}
    assert store.calls(stale.id) == []
    assert store.list_artifacts(exec_id=stale.id) == []
    for execution in executions[1:]:
        assert [c.seq for c in store.calls(execution.id)] == list(range(10))
        assert len(store.list_artifacts(exec_id=execution.id)) == 10
    if direct is not None:
        assert max(batches) > 1  # the writers that queued up shared a commit


def test_a_row_the_database_refuses_in_a_shared_commit_fails_alone(
    tmp_path: Path, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's group commit: lone call rows sharing a commit go in without savepoints (a
    failing statement is undone alone), so one the database refuses fails its caller
    only, and the others land."""
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    direct = store._sqlite
    assert direct is not None
    executions = [
        records.execution(status=ExecutionStatus.RUNNING, fence=1, run_count=1) for _ in range(4)
    ]
    for execution in executions:
        store.create_execution(execution)
    # The first write commits alone, slowly: the other three queue up meanwhile and
    # share the next commit.
    _slow_first_transaction(direct, monkeypatch, 0.3)
    batches = _batch_sizes(direct, monkeypatch)
    outcome: dict[int, str] = {}

    def write(index: int) -> None:
        call = records.call(executions[index].id, "step", 0)
        if index == 2:
            call.name = None  # type: ignore[assignment]  # NOT NULL: refused
        try:
            store.record_call(call, fence=1)
            outcome[index] = "written"
        except Exception as exc:
            outcome[index] = f"{type(exc).__name__}: {exc}"

    first = threading.Thread(target=write, args=(0,))
    first.start()
    time.sleep(0.1)
    others = [threading.Thread(target=write, args=(i,)) for i in (1, 2, 3)]
    for thread in others:
        thread.start()
    for thread in (first, *others):
        thread.join(timeout=30)
    assert batches == [3]
    assert {i: text.split(":")[0] for i, text in outcome.items()} == {
        0: "written",
        1: "written",
        2: "KitaruBackendError",
        3: "written",
    }
    assert "NOT NULL" in outcome[2]
    for index, execution in enumerate(executions):
        assert [c.call_id for c in store.calls(execution.id)] == ([] if index == 2 else ["step"])
    store.dispose()


def test_a_writer_interrupted_while_queued_leaves_the_others_going(
    tmp_path: Path, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in a thread queued behind SQLite's group commit takes its write out of the
    queue (unwritten); the writes already committing and those after it still land."""
    if threading.current_thread() is not threading.main_thread():
        pytest.fail("SIGINT reaches the main thread only; this test must run there")
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        executions = [records.execution() for _ in range(3)]
        for execution in executions:
            store.create_execution(execution)
        direct = store._sqlite
        assert direct is not None
        transaction = direct._transaction
        committing, release = threading.Event(), threading.Event()

        def held_first(action: str, op: Any, *, implicit: bool = False) -> Any:
            if not committing.is_set():
                committing.set()
                release.wait(30)
            return transaction(action, op, implicit=implicit)

        monkeypatch.setattr(direct, "_transaction", held_first)

        def write(exec_id: str) -> None:
            local = Records()
            artifact = local.artifact(exec_id, "step")
            store.record_call(local.call(exec_id, "step", 0, artifact=artifact), artifact=artifact)

        leader = threading.Thread(target=write, args=(executions[0].id,))
        leader.start()
        assert committing.wait(30)

        def interrupt_then_release() -> None:
            time.sleep(0.3)  # the main thread is queued behind the held commit by now
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            time.sleep(0.3)
            release.set()

        helper = threading.Thread(target=interrupt_then_release)
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            helper.start()
            with pytest.raises(KeyboardInterrupt):
                write(executions[1].id)
        finally:
            signal.signal(signal.SIGINT, previous)
            release.set()
            helper.join(30)
        leader.join(30)
        after = threading.Thread(target=write, args=(executions[2].id,))
        after.start()
        after.join(30)
        assert not after.is_alive(), "a write after the interrupted one never finished"
        assert [len(store.calls(e.id)) for e in executions] == [1, 0, 1]
        assert direct._pending == []
        assert not direct._leading
    finally:
        store.dispose()


_WRITER_CHILD = """
import sys
sys.path.insert(0, sys.argv[3])
from _support import Records
from kitaru._store import Store

url, count = sys.argv[1], int(sys.argv[2])
store = Store(url)
records = Records()
execution = records.execution()
store.create_execution(execution)
print("ready", flush=True)
sys.stdin.readline()
for seq in range(count):
    call_id = f"step:{seq + 1}"
    artifact = records.artifact(execution.id, call_id)
    store.record_call(
        records.call(execution.id, call_id, seq, artifact=artifact),
        artifact=artifact,
        attempt=records.attempt(execution.id, call_id),
    )
print(execution.id, flush=True)
store.dispose()
"""

#: Children import the record factories from here.
_SUPPORT_DIR = str(Path(__file__).parent)


def test_processes_writing_to_one_store(store: Store, spawn: Spawn) -> None:
    """Two processes commit interleaved transactions; on SQLite they queue on busy_timeout."""
    count = 25
    children = [spawn(_WRITER_CHILD, store.url, str(count), _SUPPORT_DIR) for _ in range(2)]
    release_together(children)
    exec_ids = [finish(child).strip() for child in children]

    assert len(set(exec_ids)) == 2
    for exec_id in exec_ids:
        calls = store.calls(exec_id)
        assert [c.seq for c in calls] == list(range(count))
        assert all(c.artifact is not None for c in calls)
        assert len(store.attempts(exec_id)) == count


_KILLED_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[2])
from _support import Records
from kitaru._store import Store

store = Store(sys.argv[1])
records = Records()
execution = records.execution()
store.create_execution(execution)
artifact = records.artifact(execution.id, "train", inline_data=b"weights")
store.record_call(
    records.call(execution.id, "train", 0, artifact=artifact),
    artifact=artifact,
    attempt=records.attempt(execution.id, "train"),
)
print(execution.id, artifact.id, flush=True)
time.sleep(60)
"""


_KILLED_LONE_ROW_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[2])
from _support import Records
from kitaru._store import Store
from kitaru._store.records import ExecutionStatus

store = Store(sys.argv[1])
records = Records()
execution = records.execution(status=ExecutionStatus.RUNNING, fence=1, run_count=1)
store.create_execution(execution)
# The usual checkpoint: its call row alone, through the fence (one statement on SQLite).
store.record_call(records.call(execution.id, "train", 0), fence=1)
print(execution.id, flush=True)
time.sleep(60)
"""


def _recorded_then_killed(spawn: Spawn, child_code: str, store_url: str) -> str:
    """Run ``child_code`` until it says it recorded, SIGKILL it; the line it printed."""
    child = spawn(child_code, store_url, _SUPPORT_DIR)
    assert child.stdout is not None
    line = child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert line, f"the child died before recording: {child.communicate()[1]}"
    assert child.returncode == -signal.SIGKILL
    return line


def test_a_lone_fenced_call_row_survives_sigkill(store_url: str, spawn: Spawn) -> None:
    """Durable when record_call returns: the commit is not left to a later write."""
    exec_id = _recorded_then_killed(spawn, _KILLED_LONE_ROW_CHILD, store_url).strip()
    store = Store(store_url)
    try:
        [call] = store.calls(exec_id)
        assert (call.call_id, call.status) == ("train", CallStatus.COMPLETED)
    finally:
        store.dispose()


def test_a_recorded_call_survives_sigkill(store_url: str, spawn: Spawn) -> None:
    line = _recorded_then_killed(spawn, _KILLED_CHILD, store_url)
    exec_id, artifact_id = line.split()

    store = Store(store_url)
    try:
        [call] = store.calls(exec_id)
        assert (call.call_id, call.status, call.artifact_id) == (
            "train",
            CallStatus.COMPLETED,
            artifact_id,
        )
        assert call.artifact is not None
        assert call.artifact.inline_data == b"weights"
        assert [a.call_id for a in store.attempts(exec_id)] == ["train"]
    finally:
        store.dispose()
