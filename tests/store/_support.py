"""Record factories and subprocess helpers shared by the store contract tests."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import uuid
from typing import Any

from kitaru._store.records import (
    ArtifactRecord,
    AttemptRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
)


class Records:
    """Builds valid records with distinct ids; keyword arguments override any field."""

    def __init__(self) -> None:
        self._clock = itertools.count(1)

    def now(self) -> float:
        """Strictly increasing fake timestamps with a fractional part."""
        return 1_700_000_000.125 + next(self._clock)

    def execution(self, **fields: Any) -> ExecutionRecord:
        values: dict[str, Any] = {
            "id": new_id(),
            "flow_name": "my_flow",
            "flow_ref": {"module": "pkg.flows", "qualname": "my_flow"},
            "status": ExecutionStatus.RUNNING,
            "stack": "local",
            "config": {"cache": True, "retries": 0},
            "created_at": self.now(),
        }
        values.update(fields)
        return ExecutionRecord(**values)

    def artifact(
        self, exec_id: str | None, call_id: str | None = None, **fields: Any
    ) -> ArtifactRecord:
        data = fields.pop("inline_data", b"\x80\x04K\x2a.")
        values: dict[str, Any] = {
            "id": new_id(),
            "exec_id": exec_id,
            "call_id": call_id,
            "name": "output" if call_id is None else f"{call_id}.output",
            "kind": "output",
            "serializer": "pickle",
            "size": 0 if data is None else len(data),
            "sha256": hashlib.sha256(data or b"").hexdigest(),
            "created_at": self.now(),
            "inline_data": data,
        }
        values.update(fields)
        return ArtifactRecord(**values)

    def call(
        self,
        exec_id: str,
        call_id: str,
        seq: int = 0,
        *,
        artifact: ArtifactRecord | None = None,
        **fields: Any,
    ) -> CallRecord:
        started = self.now()
        values: dict[str, Any] = {
            "exec_id": exec_id,
            "call_id": call_id,
            "seq": seq,
            "name": call_id.split(":")[0],
            "runtime": "inline",
            "status": CallStatus.COMPLETED,
            "artifact_id": None if artifact is None else artifact.id,
            "attempts": 1,
            "started_at": started,
            "ended_at": started + 0.5,
        }
        values.update(fields)
        return CallRecord(**values)

    def attempt(self, exec_id: str, call_id: str, attempt: int = 1, **fields: Any) -> AttemptRecord:
        started = self.now()
        values: dict[str, Any] = {
            "exec_id": exec_id,
            "call_id": call_id,
            "attempt": attempt,
            "run": 1,
            "status": "completed",
            "started_at": started,
            "ended_at": started + 0.25,
        }
        values.update(fields)
        return AttemptRecord(**values)


def new_id() -> str:
    return str(uuid.uuid4())


def start_python(code: str, *args: str) -> subprocess.Popen[str]:
    """Start ``code`` in a fresh interpreter with pipes; the caller waits for (or kills) it."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def release_together(procs: list[subprocess.Popen[str]]) -> None:
    """Wait until every child printed ``ready`` (imports done), then let them all go at once."""
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line != "ready\n":
            _out, err = proc.communicate(timeout=30)
            raise AssertionError(f"child did not get ready: {line!r}\n{err}")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """Wait for a child started with :func:`start_python`; its stdout, or fail with its stderr."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child exited with {proc.returncode}:\n{err}"
    return out


def full_execution(records: Records) -> ExecutionRecord:
    """An execution with every field set to a non-default, type-exercising value."""
    return records.execution(
        flow_name="train_model",
        flow_ref={"module": "pkg.pipelines", "qualname": "Train.run", "file": "/src/p.py"},
        status=ExecutionStatus.WAITING,
        stack="gpu-cluster",
        config={
            "stack": "gpu-cluster",
            "cache": False,
            "retries": 3,
            "image": None,
            "ratio": 0.1,
            "sources": ["a.py", "b/c.py"],
            "nested": {"deep": {"list": [1, 2.5, "x", None, True]}},
            "unicode": "naïve - 東京 🚀 \u00e9\u0301",
        },
        created_at=1_731_234_567.123456,
        metadata={"owner": "ana", "tags": ["x", "y"], "score": 0.875},
        inputs_artifact_id=new_id(),
        result_artifact_id=new_id(),
        failure={"type": "ValueError", "message": "bad", "origin": "user_code"},
        original_exec_id=new_id(),
        replay_plan={"from": "step:2", "overrides": {"step:1": {"x": 1}}},
        started_at=1_731_234_568.000001,
        ended_at=1_731_234_599.999999,
        run_count=3,
        lease_owner="host-1:pid-42:thread-7",
        lease_expires_at=1_731_234_630.5,
        fence=2,
        parent_exec_id=new_id(),
        idempotency_key="order-42",
        schedule_name="nightly",
        schedule_slot=1_731_234_000.0,
    )
