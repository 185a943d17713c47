"""Input from another process (the CLI), and answering at a terminal."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

from kitaru import ExecutionStatus
from kitaru._backend import get_backend
from kitaru._store import WaitStatus
from kitaru.client import KitaruClient
from kitaru.handle import FlowHandle
from kitaru.worker import run_worker
from tests.waits import _flows
from tests.waits.conftest import (
    child_env,
    eventually,
    exec_threads,
    kitaru_cli,
    one_error_line,
    popen_cli,
    wait_until_live_waiting,
    wait_until_released,
)


def test_two_wait_flow_answered_from_another_process_after_release(
    any_store: str, client: KitaruClient
) -> None:
    """A bool approval, then a Pydantic model, both given by ``kitaru`` in child processes."""
    handle = _flows.approval_then_plan.run(0.3)
    wait_until_released(client, handle.exec_id)
    assert exec_threads() == []

    # A wrong answer is refused by the child, with the details, and nothing changes.
    refused = kitaru_cli("executions", "input", handle.exec_id, "--value", "perhaps")
    assert refused.returncode == 1
    line = one_error_line(refused.stderr)
    assert "approval" in line
    assert "is not JSON" in line
    assert "expects bool" in line
    assert client.executions.get(handle.exec_id).pending_wait is not None

    # The approval: the child resumes the execution, runs it to the next wait, lets go.
    first = popen_cli("executions", "input", handle.exec_id, "--value", "true", "-o", "json")
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    item = json.loads(out)["item"]
    assert item["input"]["wait_id"] == "approval"
    assert item["input"]["outcome"] == "answered"
    assert item["input"]["value"] is True
    assert item["input"]["resumed"] is True
    assert item["input"]["ran_here"] is True
    assert item["status"] == "waiting"
    assert [w["wait_id"] for w in item["pending_waits"]] == ["plan"]
    execution = wait_until_released(client, handle.exec_id)
    assert execution.pending_wait is not None
    assert execution.pending_wait.wait_id == "plan"
    assert exec_threads() == []  # nothing ran here

    # The plan, from another child; it runs the rest of the flow.
    plan = json.dumps({"title": "canary", "steps": 3})
    second = popen_cli("executions", "input", handle.exec_id, "--wait", "plan", "--value", plan)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "Answered wait 'plan'" in out
    assert "completed" in out

    # The original process's handle sees the result the other process produced.
    result = handle.wait(timeout=30)
    assert result["approved"] is True
    assert result["plan"] == {"title": "canary", "steps": 3}
    assert result["plan_type"] == "Plan"
    assert result["before"]["pid"] == os.getpid()
    assert result["after"]["pid"] == second.pid
    final = client.executions.get(handle.exec_id)
    assert final.status is ExecutionStatus.COMPLETED
    assert final.run_count == 3
    stored = {w.wait_id: w for w in get_backend().store.waits(handle.exec_id)}
    assert stored["approval"].status is WaitStatus.ANSWERED
    assert stored["approval"].value is True
    assert stored["plan"].value == {"title": "canary", "steps": 3}


def test_input_from_another_process_wakes_a_live_runner(
    any_store: str, client: KitaruClient
) -> None:
    handle = _flows.approval_then_plan.run(60)
    wait_until_live_waiting(client, handle.exec_id)
    (runner,) = exec_threads(handle.exec_id)

    given = kitaru_cli("executions", "input", handle.exec_id, "--value", "true", "-o", "json")
    assert given.returncode == 0, given.stderr
    item = json.loads(given.stdout)["item"]
    assert item["input"]["resumed"] is False
    assert item["input"]["ran_here"] is False

    def at_plan() -> bool:
        pending = client.executions.get(handle.exec_id).pending_wait
        return pending is not None and pending.wait_id == "plan"

    eventually(at_plan, what="the runner to wake and reach the second wait")
    assert exec_threads(handle.exec_id) == [runner]  # the same runner, still here

    started = time.perf_counter()
    given = kitaru_cli("executions", "input", handle.exec_id, "--value", '{"title": "x"}')
    assert given.returncode == 0, given.stderr
    result = handle.wait(timeout=30)
    print(f"cross-process input + wake: {(time.perf_counter() - started) * 1000:.0f} ms")
    assert result["plan"] == {"title": "x", "steps": 1}
    assert result["after"]["ident"] == runner.ident
    assert result["after"]["pid"] == os.getpid()
    assert client.executions.get(handle.exec_id).run_count == 1


def test_answer_for_a_runner_that_died_while_waiting_is_picked_up_by_a_worker(
    client: KitaruClient,
) -> None:
    """The process holding a live wait is killed; the answer still gets the flow finished."""
    code = (
        "import time; from tests.waits._flows import typed; "
        "h = typed.run('int', 600); print(h.exec_id, flush=True); time.sleep(600)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=child_env(KITARU_LEASE_SECONDS="2"),
    )
    try:
        assert child.stdout is not None
        exec_id = child.stdout.readline().strip()
        eventually(
            lambda: client.executions.get(exec_id).pending_wait is not None,
            what="the child's runner to wait",
        )
        assert client.executions.get(exec_id).lease_owner is not None
        assert not client.executions.get(exec_id).is_orphaned
    finally:
        child.kill()
        child.wait(timeout=10)
    # Its holder is a process of this machine that exited: orphaned at once, in the
    # client's model as in the CLI (the lease is not waited out).
    assert client.executions.get(exec_id).is_orphaned
    assert [e.is_orphaned for e in client.executions.list() if e.exec_id == exec_id] == [True]

    client.executions.input(exec_id, value=5)  # its lease may still look valid here
    eventually(
        lambda: (
            client.executions.get(exec_id).status is not ExecutionStatus.WAITING
            or run_worker(once=True) == 1
        ),
        timeout=30,
        what="the answered execution to be resumed",
    )
    final = client.executions.wait(exec_id, timeout=30)
    assert final.status is ExecutionStatus.COMPLETED
    assert FlowHandle(exec_id).get()["data"] == 5
    assert FlowHandle(exec_id).get()["after"]["pid"] == os.getpid()


# --- answering at a terminal -------------------------------------------------------------


def _run_under_pty(
    kind: str, timeout: float, answers: list[bytes], deadline: float = 45
) -> tuple[int, str]:
    """Run ``tty_main`` with a pty as its terminal; answer each prompt in turn."""
    code = f"from tests.waits._flows import tty_main; tty_main({kind!r}, {timeout!r})"
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=child_env(),
        close_fds=True,
    )
    os.close(slave)
    output = b""
    pending = list(answers)
    prompts_seen = 0
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                if output.count(b"answer (") > prompts_seen and pending:
                    prompts_seen += 1
                    os.write(master, pending.pop(0))
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        os.close(master)
    return proc.returncode, output.decode(errors="replace")


def test_handle_wait_in_a_terminal_offers_to_answer_the_wait() -> None:
    # The first answer is invalid: it is explained and asked again.
    code, output = _run_under_pty("model", 0.3, [b"not a plan\n", b'{"title": "from tty"}\n'])
    assert code == 0, output
    assert "is waiting at 'ask-model': Give me a model" in output
    assert "expects: Plan {title: str, steps?: int}" in output
    assert "invalid:" in output
    assert "valid dictionary" in output
    assert "RESULT {'title': 'from tty', 'steps': 1} Plan" in output


def test_handle_wait_in_a_terminal_prompts_while_the_runner_still_waits() -> None:
    code, output = _run_under_pty("int", 600, [b"42\n"], deadline=5)
    assert code == 0, output
    assert "RESULT 42 int" in output
