"""kitaru.log(): where metadata goes, how repeated calls merge, what it accepts."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import kitaru
from kitaru import (
    KitaruClient,
    KitaruContextError,
    KitaruUsageError,
    KitaruUserCodeError,
    checkpoint,
    flow,
)
from kitaru.client import Execution
from tests.observe.conftest import Invoke


def _get(exec_id: str) -> Execution:
    return KitaruClient().executions.get(exec_id)


def _call_metadata(execution: Execution, call_id: str) -> dict[str, Any]:
    return next(c.metadata for c in execution.checkpoints if c.call_id == call_id)


# --- where it goes -------------------------------------------------------------------


@checkpoint
def tagged(x: int) -> int:
    kitaru.log(model="small", tokens=x)
    return x


@flow
def where_flow(x: int) -> int:
    kitaru.log(user="ana")
    first = tagged(x)
    second = tagged(x + 1)
    kitaru.log(total=first + second)
    return first + second


def test_checkpoint_metadata_goes_to_its_call_and_body_metadata_to_the_execution(
    any_store: str,
) -> None:
    handle = where_flow.run(2)
    assert handle.wait(timeout=30) == 5
    execution = _get(handle.exec_id)
    assert execution.metadata == {"user": "ana", "total": 5}
    assert _call_metadata(execution, "tagged") == {"model": "small", "tokens": 2}
    assert _call_metadata(execution, "tagged:2") == {"model": "small", "tokens": 3}


def test_log_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError, match=r"outside a running flow"):
        kitaru.log(anything=1)


@checkpoint
def logs_concurrently(name: str) -> str:
    kitaru.log(me=name, shared={name: True})
    return name


@flow
def fan_out_logging(names: list[str]) -> list[str]:
    futures = [logs_concurrently.submit(n, id=f"call-{n}") for n in names]
    return [f.result() for f in futures]


def test_concurrent_checkpoints_keep_their_own_metadata(any_store: str) -> None:
    names = [f"n{i}" for i in range(6)]
    handle = fan_out_logging.run(names)
    assert handle.wait(timeout=30) == names
    execution = _get(handle.exec_id)
    assert execution.metadata == {}
    for name in names:
        assert _call_metadata(execution, f"call-{name}") == {"me": name, "shared": {name: True}}


# --- merging --------------------------------------------------------------------------


@checkpoint
def merging_step() -> int:
    kitaru.log(usage={"input": 10}, model="a", tags=["x"], cfg={"t": 1})
    kitaru.log(usage={"output": 5}, model="b", tags=["y"])
    kitaru.log(usage={"input": 12}, cfg=3)
    return 1


@flow
def merging_flow() -> int:
    kitaru.log(cost={"step": 0.1}, phase="plan", nested={"a": {"deep": 1}})
    value = merging_step()
    kitaru.log(cost={"total": 0.3}, phase="done", nested={"a": {"other": 2}})
    return value


def test_repeated_logs_merge_dicts_key_by_key_and_replace_other_values(any_store: str) -> None:
    handle = merging_flow.run()
    handle.wait(timeout=30)
    execution = _get(handle.exec_id)
    assert _call_metadata(execution, "merging_step") == {
        "usage": {"input": 12, "output": 5},  # key by key; the latest value of a key wins
        "model": "b",
        "tags": ["y"],  # lists are replaced, not appended
        "cfg": 3,  # a dict replaced by a non-dict
    }
    assert execution.metadata == {
        "cost": {"step": 0.1, "total": 0.3},
        "phase": "done",
        "nested": {"a": {"other": 2}},  # one level: the value of key "a" is replaced
    }


# --- what it accepts --------------------------------------------------------------------


class NotJson:
    pass


@checkpoint
def bad_log_in_checkpoint() -> str:
    try:
        kitaru.log(fine=1, broken=NotJson())
    except KitaruUsageError as exc:
        kitaru.log(seen=str(exc))
        return "caught"
    return "not raised"


@flow
def bad_log_flow() -> str:
    outcome = bad_log_in_checkpoint()
    try:
        kitaru.log(ok="yes", when={1, 2})
    except KitaruUsageError as exc:
        kitaru.log(body_seen=str(exc))
    return outcome


def test_a_value_that_is_not_json_is_a_usage_error_naming_the_field(any_store: str) -> None:
    handle = bad_log_flow.run()
    assert handle.wait(timeout=30) == "caught"
    execution = _get(handle.exec_id)
    call = _call_metadata(execution, "bad_log_in_checkpoint")
    assert "'broken'" in call["seen"]
    assert "NotJson" in call["seen"]
    # The call that failed stored none of its fields, not even the valid ones.
    assert set(call) == {"seen"}
    assert "'when'" in execution.metadata["body_seen"]
    assert set(execution.metadata) == {"body_seen"}


def test_usage_error_is_a_value_error() -> None:
    assert issubclass(KitaruUsageError, ValueError)


# --- when it is written ----------------------------------------------------------------

_gate = threading.Event()
_reached = threading.Event()


@checkpoint(cache=False)
def blocks_until_released() -> int:
    kitaru.log(inside=True)
    _reached.set()
    _gate.wait(30)
    return 1


@flow
def logs_then_blocks() -> int:
    kitaru.log(stage="started")
    return blocks_until_released()


def test_body_metadata_is_written_at_once_checkpoint_metadata_with_the_result(
    any_store: str,
) -> None:
    _gate.clear()
    _reached.clear()
    handle = logs_then_blocks.run()
    try:
        assert _reached.wait(30)
        running = _get(handle.exec_id)
        assert running.metadata == {"stage": "started"}  # visible while the body runs
        assert all(not c.metadata for c in running.checkpoints)  # not yet written
    finally:
        _gate.set()
    handle.wait(timeout=30)
    assert _call_metadata(_get(handle.exec_id), "blocks_until_released") == {"inside": True}


_attempts: list[int] = []


@checkpoint(retries=1)
def flaky_logger() -> int:
    _attempts.append(1)
    attempt = len(_attempts)
    kitaru.log(**{f"attempt_{attempt}": True}, last=attempt)
    if attempt == 1:
        raise RuntimeError("first attempt fails")
    return attempt


@checkpoint
def always_fails() -> int:
    kitaru.log(reason="about to fail")
    raise RuntimeError("boom")


@flow
def retrying_metadata() -> int:
    return flaky_logger()


@flow
def failing_metadata() -> int:
    kitaru.log(before="failure")
    return always_fails()


def test_failed_calls_keep_their_metadata_and_retries_accumulate(any_store: str) -> None:
    _attempts.clear()
    handle = retrying_metadata.run()
    assert handle.wait(timeout=30) == 2
    assert _call_metadata(_get(handle.exec_id), "flaky_logger") == {
        "attempt_1": True,
        "attempt_2": True,
        "last": 2,
    }

    failed = failing_metadata.run()
    with pytest.raises(KitaruUserCodeError):
        failed.wait(timeout=30)
    execution = _get(failed.exec_id)
    assert execution.metadata == {"before": "failure"}
    assert _call_metadata(execution, "always_fails") == {"reason": "about to fail"}


_body_runs: list[int] = []


@flow(retries=1)
def body_retry_metadata() -> int:
    _body_runs.append(1)
    run = len(_body_runs)
    kitaru.log(runs={f"run{run}": True}, latest=run)
    if run == 1:
        raise RuntimeError("first run fails")
    return run


def test_execution_metadata_survives_a_rerun_of_the_body(any_store: str) -> None:
    _body_runs.clear()
    handle = body_retry_metadata.run()
    assert handle.wait(timeout=30) == 2
    assert _get(handle.exec_id).metadata == {"runs": {"run1": True, "run2": True}, "latest": 2}


# --- in the CLI ---------------------------------------------------------------------------


def test_metadata_shows_in_executions_get_json(cli: Invoke) -> None:
    handle = where_flow.run(4)
    handle.wait(timeout=30)
    result = cli("executions", "get", handle.exec_id, "-o", "json")
    assert result.exit_code == 0, result.stderr
    item = result.json()["item"]
    assert item["metadata"] == {"user": "ana", "total": 9}
    by_call = {c["call_id"]: c["metadata"] for c in item["checkpoints"]}
    assert by_call == {
        "tagged": {"model": "small", "tokens": 4},
        "tagged:2": {"model": "small", "tokens": 5},
    }


def test_metadata_shows_in_executions_get_table(cli: Invoke) -> None:
    handle = where_flow.run(6)
    handle.wait(timeout=30)
    result = cli("executions", "get", handle.exec_id)
    assert result.exit_code == 0, result.stderr
    assert "ana" in result.stdout  # execution metadata
    assert "small" in result.stdout  # checkpoint metadata
