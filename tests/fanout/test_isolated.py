"""``@checkpoint(runtime="isolated")``: each call in its own process; crashes fail only that call.

Every isolated call starts a Python process, so these tests keep the number of
calls small.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru import KitaruClient, KitaruUserCodeError, checkpoint, flow
from tests.fanout._support import call_id, calls, outputs, statuses


def _bump(counter: Path) -> int:
    """How many times this was called before (across processes)."""
    before = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(before + 1))
    return before


@checkpoint(runtime="isolated")
def in_child(x: int, payload: dict[str, Any]) -> dict[str, Any]:
    print(f"child output {x}")
    kitaru.log(child_pid=os.getpid(), x=x)
    return {"pid": os.getpid(), "x": x, "payload": payload}


def test_isolated_calls_run_in_their_own_processes(any_store: str) -> None:
    payload = {"text": "through the artifact store", "items": list(range(50))}

    @flow
    def body() -> dict[str, Any]:
        single = in_child(0, payload)
        fanned = [f.result() for f in in_child.map([1, 2, 3], [payload] * 3)]
        return {"parent": os.getpid(), "calls": [single, *fanned]}

    handle = body.run()
    result = handle.wait(timeout=60)
    pids = [c["pid"] for c in result["calls"]]
    assert result["parent"] not in pids
    assert len(set(pids)) == 4
    assert [c["x"] for c in result["calls"]] == [0, 1, 2, 3]
    assert all(c["payload"] == payload for c in result["calls"])

    recorded = calls(handle.exec_id)
    for i in range(4):
        call = recorded[call_id("in_child", i)]
        assert (call.status.value, call.runtime) == ("completed", "isolated")
        assert call.metadata["child_pid"] == pids[i]
        assert call.metadata["x"] == i
        assert call.output is not None
        assert call.output.load()["pid"] == pids[i]
    lines = {
        e.message: (e.call_id, e.checkpoint_name)
        for e in KitaruClient().executions.logs(handle.exec_id)
        if e.message.startswith("child output")
    }
    assert lines == {f"child output {i}": (call_id("in_child", i), "in_child") for i in range(4)}


def test_a_process_that_exits_is_retried(tmp_path: Path) -> None:
    counter = tmp_path / "attempts"

    @checkpoint(runtime="isolated", retries=1)
    def exits_once(path: str) -> str:
        if _bump(Path(path)) == 0:
            os._exit(7)
        return "second attempt"

    @flow
    def body() -> str:
        return exits_once(str(counter))

    handle = body.run()
    assert handle.wait(timeout=60) == "second attempt"
    assert counter.read_text() == "2"
    attempts = calls(handle.exec_id)["exits_once"].attempts
    assert [a.status for a in attempts] == ["failed", "completed"]
    assert "exited with code 7" in (attempts[0].message or "")


def _segfault() -> None:
    ctypes.string_at(0)


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does


def _raise() -> None:
    raise ValueError("raised in the child")


CRASHES = {"segfault": _segfault, "sigkill": _kill_self, "raise": _raise}


@checkpoint(runtime="isolated")
def crashes(kind: str) -> str:
    CRASHES[kind]()
    return "unreachable"


def test_a_crash_fails_only_that_call(any_store: str) -> None:
    @flow
    def survivor() -> list[str]:
        futures = crashes.map(["segfault", "sigkill", "raise"])
        healthy = in_child.submit(9, {})
        seen = []
        for future in futures:
            try:
                future.result()
            except Exception as exc:
                seen.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        seen.append(f"healthy {healthy.result()['x']}")
        return seen

    handle = survivor.run()
    assert handle.wait(timeout=60) == [
        "IsolatedCheckpointError: The isolated process of checkpoint 'crashes' was killed "
        "by signal SIGSEGV.",
        "IsolatedCheckpointError: The isolated process of checkpoint 'crashes' was killed "
        "by signal SIGKILL (out of memory?).",
        # An exception raised in the child keeps its type, as it would inline.
        "ValueError: raised in the child",
        "healthy 9",
    ]
    assert statuses(handle.exec_id) == {
        "crashes": "failed",
        "crashes:2": "failed",
        "crashes:3": "failed",
        "in_child": "completed",
    }
    recorded = outputs(handle.exec_id)
    assert list(recorded) == ["in_child"]
    assert recorded["in_child"]["x"] == 9


def test_an_uncaught_isolated_failure_fails_the_execution() -> None:
    @flow
    def body() -> str:
        return crashes("raise")

    with pytest.raises(KitaruUserCodeError, match="raised in the child") as info:
        body.run().wait(timeout=60)
    assert info.value.checkpoint == "crashes"


def test_an_async_isolated_checkpoint_in_an_async_flow() -> None:
    @checkpoint(runtime="isolated")
    async def remote_double(x: int) -> list[int]:
        await asyncio.sleep(0)
        return [os.getpid(), 2 * x]

    @flow
    async def body() -> list[Any]:
        results = await asyncio.gather(remote_double(1), remote_double(2))
        return [os.getpid(), *results]

    handle = body.run()
    parent, (pid1, v1), (pid2, v2) = handle.wait(timeout=60)
    assert (v1, v2) == (2, 4)
    assert parent not in (pid1, pid2)
    assert outputs(handle.exec_id) == {"remote_double": [pid1, 2], "remote_double:2": [pid2, 4]}
