"""Fault-injection harness: run ``_fi_flow.py`` in a real process, SIGKILL it, resume it.

Shared by ``tests/recovery/test_fault_injection.py`` and ``bench/crash_points.py``.
The store is whatever ``KITARU_CONFIG_PATH`` / ``KITARU_STORE_URL`` in this
process's environment name; children inherit it and run with a 1 s lease so a
killed runner's execution becomes resumable quickly.

``verify`` returns a list of problems (empty = recovered correctly) instead of
asserting, so the benchmark can count bad recoveries instead of stopping.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

FLOW_SCRIPT = Path(__file__).resolve().with_name("_fi_flow.py")
CALL_IDS: tuple[str, ...] = ("load", "scale", "scale:2", "summarize")
CALL_NAMES: dict[str, str] = {
    "load": "load",
    "scale": "scale",
    "scale:2": "scale",
    "summarize": "summarize",
}
#: ``marked``: inside the checkpoint's function, after the store shows the call as
#: running (long calls get a ``running`` row; see ``kitaru._runtime.progress``).
KINDS: tuple[str, ...] = ("before", "inside", "marked", "after")
#: Every boundary, in the order the flow reaches them.
KILL_POINTS: tuple[str, ...] = tuple(f"{kind}:{cid}" for cid in CALL_IDS for kind in KINDS)
LEASE_SECONDS = "1"
LEASE_STILL_VALID = "lease is valid"
#: KITARU_RUNNING_MARK_AFTER for ``marked`` kill points (keeps them fast).
MARK_AFTER = "0.2"


# -- what a correct run produces -------------------------------------------------------


def expected_outputs(n: int) -> dict[str, Any]:
    xs = list(range(1, n + 1))
    doubled = [2 * x for x in xs]
    tripled = [3 * x for x in doubled]
    return {
        "load": xs,
        "scale": doubled,
        "scale:2": tripled,
        "summarize": {"count": n, "total": sum(tripled), "max": max(tripled)},
    }


def expected_result(n: int) -> dict[str, Any]:
    outputs = expected_outputs(n)
    tripled = outputs["scale:2"]
    return {"summary": outputs["summarize"], "first": tripled[0], "last": tripled[-1]}


def split_point(point: str) -> tuple[str, str]:
    kind, _, call_id = point.partition(":")
    if kind not in KINDS or call_id not in CALL_IDS:
        raise ValueError(f"unknown kill point {point!r}; known: {', '.join(KILL_POINTS)}")
    return kind, call_id


def completed_before_kill(point: str) -> list[str]:
    """The call ids that must be recorded as completed when the flow dies at ``point``."""
    kind, call_id = split_point(point)
    k = CALL_IDS.index(call_id)
    return list(CALL_IDS[: k + 1] if kind == "after" else CALL_IDS[:k])


# -- processes --------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment (store location included) with a short lease."""
    env = dict(os.environ)
    env.pop("KILL_AT", None)
    env.pop("FI_STEP_DELAY", None)
    env["KITARU_LEASE_SECONDS"] = LEASE_SECONDS
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class FlowProcess:
    """``python _fi_flow.py LEDGER N`` in its own process, with its stdout read by lines."""

    def __init__(
        self,
        ledger: Path,
        n: int,
        *,
        cwd: Path,
        kill_at: str | None = None,
        step_delay: float | None = None,
        stderr_path: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        extra = dict(extra_env or {})
        if kill_at is not None:
            extra["KILL_AT"] = kill_at
        if step_delay:
            extra["FI_STEP_DELAY"] = str(step_delay)
        self._stderr: IO[bytes] | int = (
            open(stderr_path, "wb") if stderr_path is not None else subprocess.DEVNULL  # noqa: SIM115
        )
        self.stderr_path = stderr_path
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(FLOW_SCRIPT), str(ledger), str(n)],
            cwd=cwd,
            env=child_env(**extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout: float = 30.0) -> str:
        """The first stdout line starting with ``prefix``; RuntimeError if it never comes."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"no {prefix!r} line within {timeout} s; saw {self.seen}{self._stderr_tail()}"
                )
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=10)
                raise RuntimeError(
                    f"flow process exited ({self.proc.returncode}) before printing {prefix!r}; "
                    f"saw {self.seen}{self._stderr_tail()}"
                )
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def _stderr_tail(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return "; stderr:\n" + self.stderr_path.read_text(errors="replace")[-2000:]

    def kill(self) -> float:
        """SIGKILL the process; returns the wall-clock time of the kill."""
        killed_at = time.time()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return killed_at

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if not isinstance(self._stderr, int):
            self._stderr.close()


def kill_at_point(
    ledger: Path, n: int, point: str, *, cwd: Path, lease_seconds: float | None = None
) -> tuple[str, float]:
    """Run the flow until ``point``, SIGKILL it there; returns (exec id, kill wall time)."""
    kind, call_id = split_point(point)
    extra = {} if lease_seconds is None else {"KITARU_LEASE_SECONDS": str(lease_seconds)}
    stop_at = point
    if kind == "marked":
        stop_at = f"inside:{call_id}"
        extra["KITARU_RUNNING_MARK_AFTER"] = MARK_AFTER
    proc = FlowProcess(
        ledger, n, cwd=cwd, kill_at=stop_at, stderr_path=cwd / "flow.stderr", extra_env=extra
    )
    try:
        line = proc.wait_for("AT ")
        _, where, exec_id = line.split(" ", 2)
        if where != stop_at:
            raise RuntimeError(f"flow stopped at {where!r}, expected {stop_at!r}")
        if kind == "marked":
            _wait_until_marked_running(exec_id, call_id)
        return exec_id, proc.kill()
    finally:
        proc.close()


def _wait_until_marked_running(exec_id: str, call_id: str, timeout: float = 20.0) -> None:
    from kitaru import KitaruClient

    deadline = time.monotonic() + timeout
    while True:
        calls = {
            c.call_id: c.status.value for c in KitaruClient().executions.get(exec_id).checkpoints
        }
        if calls.get(call_id) == "running":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"call {call_id!r} never showed as running; calls: {calls}")
        time.sleep(0.05)


@dataclass
class WorkerRun:
    returncode: int
    stdout: str
    stderr: str
    tries: int
    seconds: float


def start_worker(*args: str, cwd: Path, **extra_env: str) -> subprocess.Popen[str]:
    """``python -m kitaru.worker ARGS...`` in a new process, stdout/stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "kitaru.worker", *args],
        cwd=cwd,
        env=child_env(**extra_env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def resume_in_new_process(exec_id: str, *, cwd: Path, timeout: float = 60.0) -> WorkerRun:
    """``python -m kitaru.worker EXEC_ID`` from ``cwd``, retried while the lease is valid."""
    started = time.monotonic()
    deadline = started + timeout
    tries = 0
    while True:
        tries += 1
        proc = start_worker(exec_id, cwd=cwd)
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return WorkerRun(-9, out, err + "\n(worker timed out)", tries, timeout)
        if proc.returncode != 0 and LEASE_STILL_VALID in err and time.monotonic() + 1 < deadline:
            time.sleep(0.1)
            continue
        return WorkerRun(proc.returncode, out, err, tries, time.monotonic() - started)


# -- reading the store and the ledger -------------------------------------------------------


def read_ledger(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(line for line in path.read_text().splitlines() if line)


def wait_until_orphaned(exec_id: str, timeout: float = 30.0) -> None:
    """Poll the store until the dead runner's lease has expired."""
    from kitaru import KitaruClient

    deadline = time.monotonic() + timeout
    while True:
        execution = KitaruClient().executions.get(exec_id)
        # The lease itself, not is_orphaned (which knows a dead runner of this machine
        # at once): a worker that only polls for expired leases must see it too.
        expires = execution.lease_expires_at
        if execution.status.is_finished or (
            expires is not None and expires.timestamp() < time.time()
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"execution {exec_id} is still {execution.status.value} with a lease until "
                f"{execution.lease_expires_at} after {timeout} s"
            )
        time.sleep(0.05)


def wait_until_finished(exec_id: str, timeout: float = 30.0) -> str:
    from kitaru import KitaruClient

    deadline = time.monotonic() + timeout
    while True:
        execution = KitaruClient().executions.get(exec_id)
        if execution.status.is_finished:
            return execution.status.value
        if time.monotonic() > deadline:
            raise RuntimeError(f"execution {exec_id} still {execution.status.value}")
        time.sleep(0.05)


@dataclass
class Snapshot:
    """What was stored and what had run when the process died."""

    status: str
    #: call id -> artifact id, for calls recorded as completed.
    completed: dict[str, str]
    ledger: Counter[str] = field(default_factory=Counter)
    #: call ids recorded as running (a long call in flight when the process died).
    running: list[str] = field(default_factory=list)


def snapshot(exec_id: str, ledger: Path) -> Snapshot:
    from kitaru import KitaruClient

    execution = KitaruClient().executions.get(exec_id)
    completed = {
        c.call_id: c.artifacts[0].artifact_id
        for c in execution.checkpoints
        if c.status.value == "completed" and c.artifacts
    }
    running = [c.call_id for c in execution.checkpoints if c.status.value == "running"]
    return Snapshot(execution.status.value, completed, read_ledger(ledger), running)


def verify(
    exec_id: str,
    n: int,
    before: Snapshot,
    ledger: Path,
    *,
    point: str | None = None,
) -> list[str]:
    """Everything wrong with the recovered execution (empty list: recovered correctly).

    ``before`` is the state right after the kill. With ``point`` (a deterministic
    kill point) the checks are exact; without it (a random kill) they are the
    durability guarantees: recorded checkpoints never run again, any other one
    runs at most once more, and the store holds each output exactly once.
    """
    from kitaru import KitaruClient

    problems: list[str] = []
    client = KitaruClient()
    outputs = expected_outputs(n)
    after = read_ledger(ledger)
    execution = client.executions.get(exec_id)

    # The script's __main__ block ran once (the worker must not run it again).
    if after["main"] != 1:
        problems.append(f"the script's __main__ block ran {after['main']} times, expected 1")

    if execution.status.value != "completed":
        failure = execution.failure.message if execution.failure else None
        problems.append(f"status is {execution.status.value} ({failure}), expected completed")

    # Calls: exactly the expected ids, each completed once with one loadable output.
    call_ids = [c.call_id for c in execution.checkpoints]
    if call_ids != list(CALL_IDS):
        problems.append(f"recorded calls {call_ids}, expected {list(CALL_IDS)}")
    for call in execution.checkpoints:
        where = f"call {call.call_id!r}"
        if call.name != CALL_NAMES.get(call.call_id):
            problems.append(f"{where} is checkpoint {call.name!r}")
        if call.status.value != "completed":
            problems.append(f"{where} is {call.status.value}, expected completed")
        done = [a for a in call.attempts if a.status == "completed"]
        if len(done) != 1:
            history = [(a.run, a.status) for a in call.attempts]
            problems.append(f"{where} has {len(done)} completed attempts (run, status): {history}")
        if len(call.artifacts) != 1:
            problems.append(f"{where} has {len(call.artifacts)} artifacts")
            continue
        try:
            value = call.artifacts[0].load()
        except Exception as exc:
            problems.append(f"{where}: output cannot be loaded: {exc!r}")
            continue
        if value != outputs.get(call.call_id):
            problems.append(f"{where} output {value!r}, expected {outputs.get(call.call_id)!r}")

    # Outputs completed before the kill are the same stored artifacts (not rewritten).
    now_ids = {c.call_id: c.artifacts[0].artifact_id for c in execution.checkpoints if c.artifacts}
    for call_id, artifact_id in before.completed.items():
        if now_ids.get(call_id) != artifact_id:
            problems.append(
                f"call {call_id!r} completed before the kill with artifact {artifact_id}, "
                f"now {now_ids.get(call_id)}"
            )

    # The artifact index: one output per call, one input, one result; no duplicates.
    artifacts = client.artifacts.list(exec_id)
    per_kind = Counter(a.role for a in artifacts)
    per_output = Counter(a.call_id for a in artifacts if a.role == "output")
    if per_output != Counter(CALL_IDS):
        problems.append(f"output artifacts per call {dict(per_output)}, expected one per call")
    if per_kind != Counter({"output": len(CALL_IDS), "flow_inputs": 1, "flow_result": 1}):
        problems.append(f"artifacts by kind {dict(per_kind)}")
    results = [a for a in artifacts if a.role == "flow_result"]
    if len(results) == 1:
        result = results[0].load()
        if result != expected_result(n):
            problems.append(f"flow result {result!r}, expected {expected_result(n)!r}")

    # The ledger: what really ran, across all processes.
    for call_id in CALL_IDS:
        start, end = f"{call_id} start", f"{call_id} end"
        new_starts = after[start] - before.ledger[start]
        if call_id in before.completed:
            if after[start] != before.ledger[start] or after[end] != before.ledger[end]:
                problems.append(
                    f"{call_id!r} had completed before the kill but ran again "
                    f"(starts {before.ledger[start]}->{after[start]}, "
                    f"ends {before.ledger[end]}->{after[end]})"
                )
        elif new_starts > 1:
            problems.append(f"{call_id!r} ran {new_starts} more times after the kill (max 1)")
        if after[end] < 1:
            problems.append(f"{call_id!r} never finished (ledger: {dict(after)})")

    if point is not None:
        problems.extend(_exact_checks(point, before, after, execution))
    return problems


def _exact_checks(point: str, before: Snapshot, after: Counter[str], execution: Any) -> list[str]:
    problems: list[str] = []
    kind, killed = split_point(point)
    done = completed_before_kill(point)
    if kind == "marked" and before.running != [killed]:
        problems.append(f"at the kill the store showed {before.running} running, not {killed!r}")
    if sorted(before.completed) != sorted(done):
        problems.append(
            f"at the kill ({point}) the store had {sorted(before.completed)} completed, "
            f"expected {sorted(done)}"
        )
    for call_id in CALL_IDS:
        start, end = f"{call_id} start", f"{call_id} end"
        died_inside = kind in ("inside", "marked") and call_id == killed
        ran_before = call_id in done or died_inside
        expect_before = (int(ran_before), int(call_id in done))
        if (before.ledger[start], before.ledger[end]) != expect_before:
            problems.append(
                f"before resuming, ledger has {call_id!r} started {before.ledger[start]} / "
                f"ended {before.ledger[end]} times, expected {expect_before}"
            )
        expect_after = (2 if died_inside else 1, 1)
        if (after[start], after[end]) != expect_after:
            problems.append(
                f"after resuming, ledger has {call_id!r} started {after[start]} / ended "
                f"{after[end]} times, expected {expect_after}"
            )
    # The first run recorded the calls done before the kill; the resumed run the rest.
    if execution.run_count != 2:
        problems.append(f"run_count is {execution.run_count}, expected 2 (one resume)")
    for call in execution.checkpoints:
        runs = sorted({a.run for a in call.attempts if a.status == "completed"})
        expected_run = 1 if call.call_id in done else 2
        if runs != [expected_run]:
            problems.append(f"call {call.call_id!r} completed in run(s) {runs}, not {expected_run}")
    return problems
