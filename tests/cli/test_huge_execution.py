"""``kitaru executions get`` on an execution with 10,000 checkpoint calls.

The text output summarises (counts by status, first and last calls, how many are
hidden and how to see them); ``-o json`` keeps every call. The calls are written
through the store in one transaction rather than by running 10,000 checkpoints.
No timing is asserted: the summary's content is.
"""

from __future__ import annotations

import time
import uuid

from kitaru._backend import get_backend
from kitaru._store import CallRecord, CallStatus, ExecutionRecord, ExecutionStatus
from tests.cli.conftest import Invoke

TOTAL = 10_000
FAILED_EVERY = 1_000  # calls 1000, 2000, ... failed: 10 of them, all in the hidden middle


def _stored_execution(total: int) -> str:
    """A completed execution of flow ``many`` with ``total`` calls step, step:2, ..."""
    exec_id = str(uuid.uuid4())
    now = time.time()
    record = ExecutionRecord(
        id=exec_id,
        flow_name="many",
        flow_ref={"module": "nowhere", "qualname": "many"},
        status=ExecutionStatus.COMPLETED,
        stack="local",
        config={"stack": "local", "cache": True, "retries": 0},
        created_at=now,
        started_at=now,
        ended_at=now + 1,
        run_count=1,
    )
    calls = [
        CallRecord(
            exec_id=exec_id,
            call_id="step" if seq == 1 else f"step:{seq}",
            seq=seq,
            name="step",
            runtime="inline",
            status=CallStatus.FAILED if seq % FAILED_EVERY == 0 else CallStatus.COMPLETED,
            attempts=1,
            started_at=now + seq / total,
            ended_at=now + seq / total,
        )
        for seq in range(1, total + 1)
    ]
    get_backend().store.create_execution(record, calls=calls)
    return exec_id


def _rows(stdout: str) -> list[str]:
    """Call ids in the timeline table (the second column of its rows)."""
    table = "│" in stdout  # a Rich table, else the plain text of a very long timeline
    rows = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")] if table else ["", *line.split()]
        if len(cells) > 3 and cells[1].isdigit():
            rows.append(cells[2])
    return rows


def test_a_10000_call_execution_is_summarised_in_text_and_whole_in_json(
    cli: Invoke, any_store: str
) -> None:
    exec_id = _stored_execution(TOTAL)  # one execution for every view: it is big to write

    result = cli("executions", "get", exec_id)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "10,000 calls: 9,990 completed, 10 failed" in out
    assert "first 10 and last 10 of 10,000 calls" in out
    expected = ["step"] + [f"step:{n}" for n in range(2, 11)]
    expected += [f"step:{n}" for n in range(9_991, 10_001)]
    assert _rows(out) == expected
    assert "9,980 more" in out
    assert "9,980 of 10,000 calls not shown" in out
    assert f"kitaru executions get {exec_id} --calls all" in out
    assert len(out.splitlines()) < 60

    three = cli("executions", "get", exec_id, "--calls", "3")
    assert three.exit_code == 0, three.stderr
    assert _rows(three.stdout) == [
        "step",
        "step:2",
        "step:3",
        "step:9998",
        "step:9999",
        "step:10000",
    ]
    assert "9,994 of 10,000 calls not shown" in three.stdout

    everything = cli("executions", "get", exec_id, "--calls", "all")
    assert everything.exit_code == 0, everything.stderr
    assert _rows(everything.stdout) == ["step"] + [f"step:{n}" for n in range(2, TOTAL + 1)]
    assert "not shown" not in everything.stdout
    assert "10,000 calls: 9,990 completed, 10 failed" in everything.stdout

    as_json = cli("executions", "get", exec_id, "-o", "json")
    assert as_json.exit_code == 0, as_json.stderr
    checkpoints = as_json.json()["item"]["checkpoints"]
    assert len(checkpoints) == TOTAL
    assert [c["call_id"] for c in checkpoints[:2]] == ["step", "step:2"]
    assert checkpoints[-1]["call_id"] == "step:10000"
    assert sum(c["status"] == "failed" for c in checkpoints) == TOTAL // FAILED_EVERY


def test_calls_all_shows_every_call_and_short_timelines_are_whole(
    cli: Invoke, any_store: str
) -> None:
    exec_id = _stored_execution(45)
    default = cli("executions", "get", exec_id)
    assert len(_rows(default.stdout)) == 20
    everything = cli("executions", "get", exec_id, "--calls", "all")
    assert everything.exit_code == 0, everything.stderr
    assert _rows(everything.stdout) == ["step"] + [f"step:{n}" for n in range(2, 46)]
    assert "not shown" not in everything.stdout

    short = _stored_execution(20)  # 10 + 10: nothing to hide
    whole = cli("executions", "get", short)
    assert len(_rows(whole.stdout)) == 20
    assert "not shown" not in whole.stdout


def test_bad_calls_values_are_usage_errors(cli: Invoke, any_store: str) -> None:
    exec_id = _stored_execution(3)
    for value in ("-1", "many"):
        result = cli("executions", "get", exec_id, "--calls", value)
        assert result.exit_code == 1
        assert "--calls" in result.stderr
        assert result.stdout == ""
