"""Failures of the runner itself: a really full disk, a store that rejects writes.

They surface at once (``wait()`` raises ``KitaruBackendError``, never hangs), are
recorded with origin ``backend`` when the store can take it (never blamed on the
user's code, never retried as if user code failed), and the execution resumes to
completion once the cause is gone, without re-running completed checkpoints.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from kitaru import (
    ExecutionStatus,
    KitaruBackendError,
    KitaruClient,
    KitaruExecutionError,
    KitaruUserCodeError,
)
from kitaru._backend import forget_backends
from kitaru.config import reset_configuration
from kitaru.errors import FailureOrigin
from tests.recovery import _rf_flows
from tests.recovery._rc_support import REPO_ROOT, child_env, counts, run


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB filesystem (tmpfs) that a flow can fill up."""
    if os.geteuid() != 0:
        pytest.skip("filling a real disk needs a small tmpfs, and mounting one needs root")
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2M,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        forget_backends()  # close the store before the filesystem goes away
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _assert_backend_error(error: BaseException, exec_id: str) -> str:
    assert isinstance(error, KitaruBackendError)
    assert isinstance(error, KitaruExecutionError)
    assert not isinstance(error, KitaruUserCodeError)
    assert error.exec_id == exec_id
    assert error.failure_origin is FailureOrigin.BACKEND
    message = str(error)
    assert f"kitaru executions resume {exec_id}" in message
    return message


def test_a_full_disk_fails_the_execution_promptly_and_resume_completes_it(
    small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store and artifacts on the disk that fills: wait() raises, resume finishes."""
    monkeypatch.setenv("KITARU_CONFIG_PATH", str(small_disk / "home"))
    reset_configuration()
    forget_backends()
    log, filler, marker = tmp_path / "steps.log", small_disk / "filler", tmp_path / "filled"

    handle = _rf_flows.fills_the_disk.run(str(log), str(filler), str(marker))
    with pytest.raises(KitaruBackendError) as info:
        handle.wait(timeout=120)  # generous: a hang fails as a timeout instead

    message = _assert_backend_error(info.value, handle.exec_id)
    assert "No space left on device" in message
    if "could not record this failure" in message:  # the full disk refused that as well
        assert "executions retry" not in message  # it is still running: retry refuses it
    else:
        assert f"kitaru executions retry {handle.exec_id}" in message  # 0.21's last line
    with pytest.raises(KitaruBackendError):
        handle.get()
    # Neither the checkpoint's retries nor the flow's re-ran user code on a full disk.
    assert counts(log) == {"prepare": 1, "produce": 1}

    # Resumed while the disk is still full, it fails again (taking it over, or running
    # it, whichever the full disk refuses first); it does not hang.
    client = KitaruClient()
    with pytest.raises(KitaruBackendError) as again:
        client.executions.resume(handle.exec_id, wait=True)
    assert handle.exec_id in str(again.value)
    assert "full" in str(again.value) or "No space left on device" in str(again.value)
    produced = counts(log)["produce"]
    assert produced in (1, 2)

    filler.unlink()
    resumed = client.executions.resume(handle.exec_id, wait=True)
    assert resumed.status is ExecutionStatus.COMPLETED
    assert handle.wait(timeout=60) == _rf_flows.BIG + 1
    assert counts(log) == {"prepare": 1, "produce": produced + 1}


def test_a_script_on_a_full_disk_gets_the_error_and_no_traceback(
    small_disk: Path, tmp_path: Path
) -> None:
    """Nothing Kitaru runs in the background prints a traceback when the disk is full."""
    log, filler, marker = tmp_path / "steps.log", small_disk / "filler", tmp_path / "filled"
    script = "import sys; from tests.recovery._rf_flows import main_fill; main_fill(sys.argv[1:])"
    done = run(
        ["-c", script, str(log), str(filler), str(marker)],
        cwd=REPO_ROOT,
        env=child_env(KITARU_CONFIG_PATH=str(small_disk / "home")),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    exec_id, outcome = done.stdout.splitlines()
    assert outcome == "BACKEND KitaruBackendExecutionError"
    assert "Traceback" not in done.stderr
    # At most one-line notes (e.g. that the store could not record the failure either).
    assert all(line.startswith("Kitaru") for line in done.stderr.splitlines()), done.stderr
    assert counts(log) == {"prepare": 1, "produce": 1}

    filler.unlink()
    resumed = run(
        ["-m", "kitaru.cli", "executions", "resume", exec_id],
        cwd=REPO_ROOT,
        env=child_env(KITARU_CONFIG_PATH=str(small_disk / "home")),
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert counts(log) == {"prepare": 1, "produce": 2}


def test_a_full_artifact_store_is_recorded_as_a_backend_failure_and_resumed_by_the_cli(
    any_store: str, small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store has room, the artifact store is full: the failure is recorded."""
    monkeypatch.setenv("KITARU_ARTIFACTS_ROOT", str(small_disk / "artifacts"))
    forget_backends()
    log, filler, marker = tmp_path / "steps.log", small_disk / "filler", tmp_path / "filled"

    handle = _rf_flows.fills_the_disk.run(str(log), str(filler), str(marker))
    with pytest.raises(KitaruBackendError) as info:
        handle.wait(timeout=120)

    _assert_backend_error(info.value, handle.exec_id)
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.status is ExecutionStatus.FAILED
    assert execution.failure is not None
    assert execution.failure.origin is FailureOrigin.BACKEND
    assert execution.failure.message is not None
    assert "No space left on device" in execution.failure.message
    assert [(c.call_id, c.status.value) for c in execution.checkpoints] == [
        ("prepare", "completed")
    ]
    assert counts(log) == {"prepare": 1, "produce": 1}

    filler.unlink()
    done = run(
        ["-m", "kitaru.cli", "executions", "resume", handle.exec_id],
        cwd=REPO_ROOT,
        env=child_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert KitaruClient().executions.get(handle.exec_id).status is ExecutionStatus.COMPLETED
    assert handle.wait(timeout=60) == _rf_flows.BIG + 1
    assert counts(log) == {"prepare": 1, "produce": 2}


def _rename_table(url: str, old: str, new: str) -> None:
    """Another client changes the store under the runner (as a broken store would)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")
    finally:
        engine.dispose()


def test_a_store_that_rejects_a_checkpoints_record_is_a_backend_failure_not_the_users(
    any_store: str, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    _rf_flows.started.clear()
    _rf_flows.release.clear()
    handle = _rf_flows.store_breaks.run(str(log))
    try:
        assert _rf_flows.started.wait(30)
        # Recording the call (its row holds its small output) now fails inside the store.
        _rename_table(any_store, "kitaru_checkpoint_calls", "kitaru_calls_away")
    finally:
        _rf_flows.release.set()
    with pytest.raises(KitaruBackendError) as info:
        handle.wait(timeout=60)

    message = _assert_backend_error(info.value, handle.exec_id)
    assert "record checkpoint call 'held'" in message
    # The checkpoint ran once: a store failure takes none of its 2 retries, and the
    # flow's 2 retries do not re-run the body on a failing store.
    assert counts(log) == {"prepare": 1, "held": 1}

    _rename_table(any_store, "kitaru_calls_away", "kitaru_checkpoint_calls")
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.status is ExecutionStatus.FAILED
    assert execution.failure is not None
    assert execution.failure.origin is FailureOrigin.BACKEND
    assert [(c.call_id, c.status.value) for c in execution.checkpoints] == [
        ("prepare", "completed")
    ]
    resumed = KitaruClient().executions.resume(handle.exec_id, wait=True)
    assert resumed.status is ExecutionStatus.COMPLETED
    assert handle.wait(timeout=60) == 2
    assert counts(log) == {"prepare": 1, "held": 2}


@pytest.mark.parametrize("origin", ["backend", "user_code"])
def test_a_failure_the_store_could_not_record_points_at_resume_not_retry(origin: str) -> None:
    # The store still lists the execution as running: `retry` would refuse it.
    from kitaru._runtime import driver
    from kitaru.handle import runner_failure_error

    exec_id = "0196f000-0000-7000-8000-000000000001"
    live = driver.register_live(exec_id)
    live.failure = {"origin": origin, "message": "disk I/O error", "exception_type": "OSError"}
    live.fence, live.flow_name = 1, "pipeline"

    def error_when(recorded: bool) -> str:
        live.failure_recorded = recorded
        with driver._live_lock:
            driver._runner_failures[exec_id] = live
        try:
            error = runner_failure_error(exec_id, None)
        finally:
            with driver._live_lock:
                driver._runner_failures.pop(exec_id, None)
        assert error is not None
        return str(error)

    try:
        message = error_when(recorded=False)
        assert "still lists the execution as running" in message
        assert f"kitaru executions resume {exec_id}" in message
        assert "executions retry" not in message
        # Recorded as failed: 0.21's retry line ends it.
        assert error_when(recorded=True).rstrip().endswith(f"kitaru executions retry {exec_id}")
    finally:
        with driver._live_lock:
            driver._live.pop(exec_id, None)


def test_a_sqlite_store_that_refuses_writes_names_the_file_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite refuses the write (``query_only``: as a read-only file does, even to root):
    the error names the store file and what to make writable."""
    from kitaru._backend import get_backend
    from kitaru.flow import flow

    db = tmp_path / "kitaru.db"
    monkeypatch.setenv("KITARU_STORE_URL", f"sqlite:///{db}")
    forget_backends()

    @flow
    def nothing() -> int:
        return 1

    assert nothing.run().wait(timeout=30) == 1
    direct = get_backend().store._sqlite
    assert direct is not None
    direct._cursor().execute("PRAGMA query_only = 1")  # the kept writer connection
    with pytest.raises(KitaruBackendError) as info:
        nothing.run()
    message = str(info.value)
    assert str(db) in message
    assert "readonly" in message
    assert "writable" in message
