"""Isolated checkpoints of a flow defined in a script, continued by another process.

A process that retries or resumes a script's flow loads the script as
``__mp_main__``, so the checkpoint it sends to its isolated process refers to the
script's helpers and classes by that module: the isolated process must load the
script too. Real processes throughout: the script runs as ``python script.py``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from kitaru import ExecutionStatus, FlowHandle, KitaruClient
from kitaru._runtime import loader
from tests._printed import printed_exec_id
from tests.recovery._rc_support import (
    child_env,
    read_log,
    run,
    start,
    wait_for,
    wait_lease_expired,
)

# The isolated checkpoint calls a helper, takes a Pydantic model and returns a
# dataclass, all defined in the script. It fails (or, with ISO_HANG, hangs) until the
# READY file exists.
SCRIPT = """
import dataclasses
import os
import sys
import time

import pydantic

from kitaru import checkpoint, flow


class Order(pydantic.BaseModel):
    qty: int


@dataclasses.dataclass
class Priced:
    total: int


def double(x: int) -> int:
    return x * 2


@checkpoint(runtime="isolated")
def price(order: Order) -> Priced:
    if not os.path.exists(os.environ["ISO_READY"]):
        if os.environ.get("ISO_HANG"):
            with open(os.environ["ISO_LOG"], "a") as log:
                log.write("price hanging\\n")
            time.sleep(600)
        raise RuntimeError("not ready yet")
    return Priced(total=double(order.qty))


@flow
def checkout(qty: int) -> dict:
    priced = price(Order(qty=qty))
    return {"total": priced.total, "priced": isinstance(priced, Priced)}


if __name__ == "__main__":
    for qty in sys.argv[1:]:
        handle = checkout.run(int(qty))
        print("EXEC", handle.exec_id, flush=True)
        try:
            handle.wait(timeout=60)
        except Exception as exc:
            print("FAILED", type(exc).__name__, flush=True)
"""


def _script(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """The script, the environment its processes get, and its READY file (absent)."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    script = scripts / "checkout_agent.py"
    script.write_text(SCRIPT)
    ready = tmp_path / "ready"
    # Pickle off: the script's dataclass must come back from the isolated process as a
    # class of the loaded script (a portable value), not as a pickled stand-in.
    env = child_env(
        pythonpath=False,
        ISO_READY=str(ready),
        ISO_LOG=str(tmp_path / "steps.log"),
        KITARU_ALLOW_PICKLE="0",
    )
    return script, env, ready


@pytest.fixture
def keep_main(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo what loading a script in this process does (a retry from here loads it as
    ``__mp_main__`` aliased as ``__main__``): later tests keep pytest's own modules."""
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    monkeypatch.delitem(sys.modules, "__mp_main__", raising=False)
    monkeypatch.setattr(loader, "_scripts", {})
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.mark.usefixtures("keep_main")
def test_retry_here_and_from_the_cli(
    any_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, env, ready = _script(tmp_path)
    failed = run([str(script), "21", "5"], cwd=script.parent, env=env)
    assert failed.returncode == 0, failed.stderr
    first, second = (
        printed_exec_id(line) for line in failed.stdout.splitlines() if line.startswith("EXEC")
    )
    client = KitaruClient()
    for exec_id in (first, second):
        execution = client.executions.get(exec_id)
        assert execution.status is ExecutionStatus.FAILED
        assert execution.failure is not None
        assert "not ready yet" in execution.failure.message
    ready.touch()

    # From this process (the script is loaded here as __mp_main__).
    for name in ("ISO_READY", "ISO_LOG", "KITARU_ALLOW_PICKLE"):
        monkeypatch.setenv(name, env[name])
    retried = client.executions.retry(first, wait=True)
    assert retried.status is ExecutionStatus.COMPLETED, retried.failure
    assert FlowHandle(first).get() == {"total": 42, "priced": True}

    # From the CLI, in a process started elsewhere.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(["-m", "kitaru.cli", "executions", "retry", second], cwd=elsewhere, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert client.executions.get(second).status is ExecutionStatus.COMPLETED
    assert FlowHandle(second).get() == {"total": 10, "priced": True}


def test_resume_in_a_worker_after_the_script_is_killed(any_store: str, tmp_path: Path) -> None:
    script, env, ready = _script(tmp_path)
    log = Path(env["ISO_LOG"])
    child = start([str(script), "8"], cwd=script.parent, env={**env, "ISO_HANG": "1"})
    try:
        wait_for(
            lambda: "price hanging" in read_log(log) or child.poll() is not None,
            what="the isolated checkpoint to hang",
        )
        # SIGKILL: its isolated process dies with it, and the execution is orphaned.
        os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, err
    exec_id = printed_exec_id(out)
    wait_lease_expired(exec_id)
    ready.touch()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(["-m", "kitaru.worker", exec_id], cwd=elsewhere, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert KitaruClient().executions.get(exec_id).status is ExecutionStatus.COMPLETED
    assert FlowHandle(exec_id).get() == {"total": 16, "priced": True}


def test_a_fresh_run_returns_the_script_class_without_pickle(
    any_store: str, tmp_path: Path
) -> None:
    """The first run, in the script's own process: the isolated process gets the
    script's classes by name (it loads the script), so the output is stored as JSON of
    the script's dataclass and comes back as one (pickle is off)."""
    script, env, ready = _script(tmp_path)
    ready.touch()
    done = run([str(script), "4"], cwd=script.parent, env=env)
    assert done.returncode == 0, done.stderr
    assert "FAILED" not in done.stdout, done.stdout
    exec_id = printed_exec_id(done.stdout)
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status is ExecutionStatus.COMPLETED, execution.failure
    (artifact,) = execution.checkpoints[0].artifacts
    assert artifact.serializer == "dataclass"
    assert FlowHandle(exec_id).get() == {"total": 8, "priced": True}
