"""Resuming an execution whose runner died: refusals, crash recovery, code loading, races."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from kitaru import (
    ExecutionStatus,
    FlowHandle,
    KitaruBackendError,
    KitaruClient,
    KitaruExecutionError,
    KitaruStateError,
    KitaruUserCodeError,
    checkpoint,
    flow,
)
from kitaru._runtime import control
from kitaru.client import CallStatus, Execution
from kitaru.worker import run_worker
from tests.recovery import _rc_flows
from tests.recovery._rc_support import (
    REPO_ROOT,
    RUN_FLOW,
    child_env,
    counts,
    crash_in_child,
    pause_runner,
    read_log,
    run,
    start,
    wait_for,
    wait_lease_expired,
)

# -- refusals ---------------------------------------------------------------------------


def test_resume_is_refused_while_the_runner_holds_its_lease(any_store: str) -> None:
    started, release = threading.Event(), threading.Event()

    @checkpoint
    def blocked() -> str:
        started.set()
        release.wait(20)
        return "done"

    @flow
    def busy() -> str:
        return blocked()

    handle = busy.run()
    try:
        assert started.wait(10)
        client = KitaruClient()
        before = client.executions.get(handle.exec_id)
        with pytest.raises(KitaruStateError) as info:
            client.executions.resume(handle.exec_id)
        message = str(info.value)
        assert handle.exec_id in message
        assert "lease" in message
        after = client.executions.get(handle.exec_id)
        assert after.status is ExecutionStatus.RUNNING
        assert after.run_count == before.run_count == 1
        assert after.lease_owner == before.lease_owner
    finally:
        release.set()
    assert handle.wait(timeout=20) == "done"


@checkpoint
def maybe_fail(fail: bool) -> int:
    if fail:
        raise RuntimeError("asked to fail")
    return 1


@flow
def finishes(fail: bool) -> int:
    return maybe_fail(fail)


def _finished(status: str) -> str:
    if status == "cancelled":
        started, release = threading.Event(), threading.Event()

        @checkpoint
        def hold() -> int:
            started.set()
            release.wait(20)
            return 1

        @flow
        def held() -> int:
            return hold()

        handle = held.run()
        assert started.wait(10)
        KitaruClient().executions.cancel(handle.exec_id)
        release.set()
        with pytest.raises(KitaruExecutionError):
            handle.wait(timeout=20)
        return handle.exec_id
    handle = finishes.run(status == "failed")
    if status == "failed":
        with pytest.raises(KitaruUserCodeError):
            handle.wait(timeout=20)
    else:
        handle.wait(timeout=20)
    return handle.exec_id


@pytest.mark.parametrize(
    ("status", "hint"),
    [("completed", "replay"), ("failed", "retry"), ("cancelled", "replay")],
)
def test_resume_of_a_finished_execution_is_refused_with_a_hint(
    any_store: str, status: str, hint: str
) -> None:
    exec_id = _finished(status)
    client = KitaruClient()
    before = client.executions.get(exec_id)
    assert before.status.value == status
    with pytest.raises(KitaruStateError) as info:
        client.executions.resume(exec_id)
    message = str(info.value)
    assert exec_id in message
    assert status in message
    assert hint in message
    assert client.executions.get(exec_id) == before


def test_resume_of_an_unknown_id_names_it(any_store: str) -> None:
    with pytest.raises(KitaruBackendError, match="Failed to load execution 'not-an-execution'"):
        KitaruClient().executions.resume("not-an-execution")


# -- crash recovery -----------------------------------------------------------------------


def _attempts(execution: Execution) -> dict[str, list[tuple[int, int, str]]]:
    return {
        c.call_id: [(a.attempt, a.run, a.status) for a in c.attempts] for c in execution.checkpoints
    }


def test_resume_after_the_runner_exited_mid_checkpoint(any_store: str, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    exec_id = crash_in_child(
        ["-c", RUN_FLOW, "pipeline", str(log), "4"],
        cwd=REPO_ROOT,
        env=child_env(),
        log=log,
        step="transform",
    )
    client = KitaruClient()
    orphan = client.executions.get(exec_id)
    assert orphan.status is ExecutionStatus.RUNNING
    assert orphan.is_orphaned
    assert [(c.call_id, c.status) for c in orphan.checkpoints] == [("fetch", CallStatus.COMPLETED)]

    resumed = client.executions.resume(exec_id, wait=True)
    assert resumed.exec_id == exec_id
    assert resumed.status is ExecutionStatus.COMPLETED
    assert resumed.run_count == 2
    assert _rc_flows.pipeline  # resumed from this process's registry
    assert KitaruClient().executions.get(exec_id).checkpoints[-1].artifacts[0].load() == (
        "result=50"
    )
    # fetch completed before the crash and never ran again; transform ran again once.
    assert counts(log) == {
        "fetch": 1,
        "transform": 2,
        "transform dying": 1,
        "finish": 1,
    }
    assert _attempts(resumed) == {
        "fetch": [(1, 1, "completed")],
        "transform": [(1, 2, "completed")],
        "finish": [(1, 2, "completed")],
    }


def test_a_new_process_resumes_a_sigkilled_runner_from_another_directory(
    tmp_path: Path,
) -> None:
    """``python -m kitaru.worker ID`` elsewhere finds the package module by its recorded root."""
    log = tmp_path / "steps.log"
    exec_id = crash_in_child(
        ["-c", RUN_FLOW, "pipeline", str(log), "1"],
        cwd=REPO_ROOT,
        env=child_env(),
        log=log,
        step="finish",
        kill=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(["-m", "kitaru.worker", exec_id], cwd=elsewhere, env=child_env(pythonpath=False))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [exec_id, "completed"]
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.checkpoints[-1].artifacts[0].load() == "result=20"
    assert counts(log) == {
        "fetch": 1,
        "transform": 1,
        "finish": 2,
        "finish hanging": 1,
    }


# -- code loading in a new process ----------------------------------------------------------

PACKAGE_FLOWS = '''
"""A user package's flows."""

import os
import sys


from kitaru import checkpoint, flow


def note(log, line):
    with open(log, "a") as f:
        f.write(line + "\\n")
        f.flush()
        os.fsync(f.fileno())


@checkpoint
def plan(log: str, topic: str) -> list[str]:
    note(log, "plan")
    return [f"{topic}-{i}" for i in range(3)]


@checkpoint
def write(log: str, items: list[str]) -> str:
    note(log, "write")
    if os.environ.get("RC_DIE_IN") == "write":
        note(log, "write dying")
        os._exit(0)
    return "+".join(items)


@flow
def report(log: str, topic: str) -> str:
    return write(log, plan(log, topic)).upper()


def main():
    handle = report.run(sys.argv[1], "kit")
    print(handle.exec_id, flush=True)
    print(handle.wait(timeout=60), flush=True)
'''


def _write_project(tmp_path: Path, package: str) -> Path:
    """A project marked like ``kitaru init`` does, holding package ``package``."""
    project = tmp_path / "project"
    (project / ".kitaru").mkdir(parents=True)
    (project / package).mkdir()
    (project / package / "__init__.py").write_text("")
    (project / package / "flows.py").write_text(PACKAGE_FLOWS)
    return project


def _run_package(package: str) -> list[str]:
    return ["-c", f"import sys; from {package}.flows import main; main()"]


def test_package_flow_is_found_again_from_another_working_directory(tmp_path: Path) -> None:
    package = f"rcpkg_{tmp_path.name[-8:].replace('-', '_')}"
    project = _write_project(tmp_path, package)
    log = tmp_path / "steps.log"
    exec_id = crash_in_child(
        [*_run_package(package), str(log)],
        cwd=project,
        env=child_env(pythonpath=False),
        log=log,
        step="write",
    )
    record = KitaruClient().executions.get(exec_id)
    assert record.status is ExecutionStatus.RUNNING

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(["-m", "kitaru.worker", exec_id], cwd=elsewhere, env=child_env(pythonpath=False))
    assert done.returncode == 0, done.stderr
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.run_count == 2
    assert counts(log) == {"plan": 1, "write": 2, "write dying": 1}
    assert [(c.call_id, c.artifacts[0].load()) for c in execution.checkpoints] == [
        ("plan", ["kit-0", "kit-1", "kit-2"]),
        ("write", "kit-0+kit-1+kit-2"),
    ]
    assert package not in sys.modules  # the test process never imported it


def test_missing_module_or_flow_is_named_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = f"rcgone_{tmp_path.name[-8:].replace('-', '_')}"
    project = _write_project(tmp_path, package)
    log = tmp_path / "steps.log"
    exec_id = crash_in_child(
        [*_run_package(package), str(log)],
        cwd=project,
        env=child_env(pythonpath=False),
        log=log,
        step="write",
    )
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader may add search paths
    client = KitaruClient()
    before = client.executions.get(exec_id)

    # 1. The package is gone: the error names the module and where it looked.
    (project / package).rename(project / "moved_away")
    with pytest.raises(KitaruStateError) as info:
        client.executions.resume(exec_id)
    message = str(info.value)
    assert f"{package}.flows" in message
    assert exec_id in message
    assert str(project) in message
    assert "PYTHONPATH" in message or "kitaru init" in message
    assert client.executions.get(exec_id) == before

    # 2. The module is back but no longer defines the flow.
    (project / "moved_away").rename(project / package)
    flows = project / package / "flows.py"
    flows.write_text(PACKAGE_FLOWS.replace("@flow\ndef report", "def report"))
    try:
        with pytest.raises(KitaruStateError) as info:
            client.executions.resume(exec_id)
    finally:
        for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
            del sys.modules[name]
    assert "report" in str(info.value)
    assert str(flows) in str(info.value) or f"{package}.flows" in str(info.value)
    assert "restart this process" in str(info.value)  # it may be the code loaded earlier
    assert client.executions.get(exec_id) == before
    assert counts(log) == {"plan": 1, "write": 1, "write dying": 1}


SCRIPT = """
import dataclasses
import os
import sys

from kitaru import checkpoint, flow


@dataclasses.dataclass
class Draft:
    title: str
    words: int


def note(log, line):
    with open(log, "a") as f:
        f.write(line + "\\n")
        f.flush()
        os.fsync(f.fileno())


@checkpoint
def outline(log: str, title: str) -> Draft:
    note(log, "outline")
    return Draft(title=title, words=3)


@checkpoint
def polish(log: str, draft: Draft) -> str:
    note(log, "polish")
    if os.environ.get("RC_DIE_IN") == "polish":
        note(log, "polish dying")
        os._exit(0)
    return f"{draft.title}:{draft.words}"


@flow
def essay(log: str, title: str) -> str:
    return polish(log, outline(log, title))


if __name__ == "__main__":
    note(sys.argv[1], "main block")
    handle = essay.run(sys.argv[1], "durable")
    print(handle.exec_id, flush=True)
    print(handle.wait(timeout=60), flush=True)
"""


def test_script_flow_is_found_again_without_rerunning_its_main_block(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    script = scripts / "essay_agent.py"
    script.write_text(SCRIPT)
    log = tmp_path / "steps.log"
    exec_id = crash_in_child(
        [str(script), str(log)],
        cwd=scripts,
        env=child_env(pythonpath=False),
        log=log,
        step="polish",
    )
    assert counts(log)["main block"] == 1

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(["-m", "kitaru.worker", exec_id], cwd=elsewhere, env=child_env(pythonpath=False))
    assert done.returncode == 0, done.stderr
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status is ExecutionStatus.COMPLETED
    # The reused Draft (a class defined in the script) was loaded back in the new process.
    assert execution.checkpoints[-1].artifacts[0].load() == "durable:3"
    assert counts(log) == {"main block": 1, "outline": 1, "polish": 2, "polish dying": 1}


def test_missing_script_is_named_and_changes_nothing(tmp_path: Path) -> None:
    script = tmp_path / "vanishing_agent.py"
    script.write_text(SCRIPT)
    log = tmp_path / "steps.log"
    exec_id = crash_in_child(
        [str(script), str(log)],
        cwd=tmp_path,
        env=child_env(pythonpath=False),
        log=log,
        step="polish",
    )
    script.unlink()
    client = KitaruClient()
    before = client.executions.get(exec_id)
    with pytest.raises(KitaruStateError) as info:
        client.executions.resume(exec_id)
    assert str(script) in str(info.value)
    assert exec_id in str(info.value)
    after = client.executions.get(exec_id)
    assert after == before
    assert after.status is ExecutionStatus.RUNNING


# -- two resumers -------------------------------------------------------------------------


def test_two_threads_resuming_one_orphan_exactly_one_wins(
    any_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "steps.log"
    exec_id = crash_in_child(
        ["-c", RUN_FLOW, "pipeline", str(log), "2"],
        cwd=REPO_ROOT,
        env=child_env(),
        log=log,
        step="transform",
    )
    # Both threads read the orphan (same fence) before either claims it, so the
    # store's fenced, conditional update is what decides.
    barrier = threading.Barrier(2)

    def load_then_meet(*args: Any, **kwargs: Any) -> Any:
        found = real_load_flow(*args, **kwargs)
        barrier.wait(10)
        return found

    real_load_flow = control.load_flow
    monkeypatch.setattr(control, "load_flow", load_then_meet)
    won: list[Execution] = []
    lost: list[BaseException] = []

    def resume() -> None:
        client = KitaruClient()
        try:
            won.append(client.executions.resume(exec_id))
        except BaseException as exc:
            lost.append(exc)

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(won) == 1, lost
    assert len(lost) == 1
    assert isinstance(lost[0], KitaruStateError), lost[0]
    assert exec_id in str(lost[0])
    assert "taken by another process" in str(lost[0])

    final = KitaruClient().executions.wait(exec_id, timeout=30)
    assert final.status is ExecutionStatus.COMPLETED
    assert final.run_count == 2
    assert counts(log) == {"fetch": 1, "transform": 2, "transform dying": 1, "finish": 1}


def test_worker_resumes_an_orphan_once(tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    exec_id = crash_in_child(
        ["-c", RUN_FLOW, "pipeline", str(log), "3"],
        cwd=REPO_ROOT,
        env=child_env(),
        log=log,
        step="fetch",
    )
    assert run_worker(once=True) == 1
    final = KitaruClient().executions.wait(exec_id, timeout=30)
    assert final.status is ExecutionStatus.COMPLETED
    # Nothing is orphaned any more: a second pass resumes nothing.
    assert run_worker(once=True) == 0
    assert counts(log) == {"fetch": 2, "fetch dying": 1, "transform": 1, "finish": 1}


TAGGED_SCRIPT = """
import os
import sys

from kitaru import checkpoint, flow

TAG = "{tag}"


def note(log, line):
    with open(log, "a") as f:
        f.write(line + "\\n")


@checkpoint
def work(log: str) -> str:
    note(log, "work")
    if os.environ.get("RC_DIE_IN") == "work":
        note(log, "work dying")
        os._exit(0)
    return TAG


@flow
def agent(log: str) -> str:
    return work(log) + "!"


if __name__ == "__main__":
    handle = agent.run(sys.argv[1])
    print(handle.exec_id, flush=True)
    handle.wait(timeout=60)
"""


def test_one_worker_resumes_flows_of_two_scripts_with_the_same_flow_name(
    tmp_path: Path,
) -> None:
    exec_ids: dict[str, str] = {}
    logs: dict[str, Path] = {}
    for tag in ("alpha", "beta"):
        folder = tmp_path / tag
        folder.mkdir()
        script = folder / "agent.py"
        script.write_text(TAGGED_SCRIPT.replace("{tag}", tag))
        logs[tag] = tmp_path / f"{tag}.log"
        exec_ids[tag] = crash_in_child(
            [str(script), str(logs[tag])],
            cwd=folder,
            env=child_env(pythonpath=False),
            log=logs[tag],
            step="work",
        )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    worker = run(
        ["-c", "from kitaru.worker import run_worker; print(run_worker(once=True))"],
        cwd=elsewhere,
        env=child_env(pythonpath=False),
    )
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.split() == ["2"]
    client = KitaruClient()
    for tag, exec_id in exec_ids.items():
        execution = client.executions.get(exec_id)
        assert execution.status is ExecutionStatus.COMPLETED
        assert FlowHandle(exec_id).get() == f"{tag}!"


def test_a_stalled_runner_cannot_overwrite_the_new_owners_calls(
    any_store: str, tmp_path: Path
) -> None:
    """SIGSTOP a runner past its lease, let another process finish the execution, SIGCONT.

    The woken runner's next write is refused by the fence (on PostgreSQL that used to
    pass silently, and the runner went on to re-run checkpoints the new owner had
    already committed).
    """
    log = tmp_path / "steps.log"
    gate = tmp_path / "gate"
    child = start(["-c", RUN_FLOW, "gated", str(log), str(gate)], cwd=REPO_ROOT, env=child_env())
    try:
        wait_for(lambda: "first start" in read_log(log), what="the child's first checkpoint")
        pause_runner(child.pid, any_store)  # the runner stalls (VM freeze, GC pause, ...)
        exec_id = KitaruClient().executions.latest(flow="gated").exec_id
        wait_lease_expired(exec_id)
        gate.touch()
        resumed = KitaruClient().executions.resume(exec_id, wait=True)
        assert resumed.status is ExecutionStatus.COMPLETED
        os.kill(child.pid, signal.SIGCONT)
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    after = KitaruClient().executions.get(exec_id)
    assert after.status is ExecutionStatus.COMPLETED
    # The stale runner's late "gated_first" must not replace the recorded output or
    # add a second "attempt 1" to the history of the execution it no longer owns.
    assert after.checkpoints == resumed.checkpoints
    assert counts(log)["second"] == 1


_RAISES_WHEN_LOADED = """
import os
from kitaru import checkpoint, flow

REGION = os.environ["KT_TEST_REGION"]  # the script needs it at its top

@checkpoint
def fails_once() -> str:
    raise RuntimeError("the first run fails")

@flow
def needs_region() -> str:
    return fails_once()

if __name__ == "__main__":
    handle = needs_region.run()
    print(handle.exec_id, flush=True)
    try:
        handle.wait()
    except Exception:
        pass
"""


def test_a_script_that_raises_when_loaded_is_the_users_error_not_kitarus(
    any_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "region_flow.py"
    script.write_text(_RAISES_WHEN_LOADED)
    result = run([str(script)], cwd=tmp_path, env=child_env(KT_TEST_REGION="eu"))
    exec_id = result.stdout.split()[0]
    before = KitaruClient().executions.get(exec_id)
    assert before.status is ExecutionStatus.FAILED
    monkeypatch.delenv("KT_TEST_REGION", raising=False)  # this process lacks it
    with pytest.raises(KitaruStateError) as info:
        KitaruClient().executions.retry(exec_id)
    message = str(info.value)
    assert "KeyError: 'KT_TEST_REGION'" in message
    assert str(script) in message
    assert "environment" in message
    assert KitaruClient().executions.get(exec_id) == before  # nothing changed
