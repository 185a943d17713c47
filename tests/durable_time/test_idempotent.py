"""Idempotent starts: ``.run(..., execution_id=...)`` starts at most one execution per id."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable

import pytest

from kitaru import KitaruStateError, KitaruUsageError
from kitaru._backend import get_backend
from kitaru.client import KitaruClient
from tests.durable_time import _flows


def test_a_second_run_with_the_same_id_returns_the_first_execution(
    any_store: str, client: KitaruClient
) -> None:
    first = _flows.echo.run(7, execution_id="webhook-delivery-42")
    second = _flows.echo.run(7, execution_id="webhook-delivery-42")
    assert second.exec_id == first.exec_id
    assert second.wait() == 7
    assert len(client.executions.list(flow="echo")) == 1
    execution = client.executions.get(first.exec_id)
    assert execution.idempotency_key == "webhook-delivery-42"
    assert execution.run_count == 1  # not started twice

    # A UUID is the execution id itself (no key stored).
    chosen = uuid.uuid4()
    by_uuid = _flows.echo.run(8, execution_id=chosen)
    assert by_uuid.exec_id == str(chosen)
    assert _flows.echo.run(8, execution_id=str(chosen)).exec_id == str(chosen)
    assert client.executions.get(str(chosen)).idempotency_key is None


def test_the_same_id_with_other_inputs_or_another_flow_is_refused(
    any_store: str, client: KitaruClient
) -> None:
    first = _flows.echo.run(1, execution_id="order-1")
    first.wait()
    with pytest.raises(KitaruStateError, match="with other inputs"):
        _flows.echo.run(2, execution_id="order-1")
    with pytest.raises(KitaruStateError, match="of flow 'echo', not of flow 'other'"):
        _flows.other.run(1, execution_id="order-1")
    assert [e.exec_id for e in client.executions.list()] == [first.exec_id]


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("", "non-empty"),
        ("x" * 256, "at most 255 characters"),
        ("nul\x00byte", "NUL character"),  # named as such, not as a length
        (42, "non-empty string"),
        (b"bytes", "non-empty string"),
    ],
)
def test_bad_execution_ids_are_usage_errors_and_start_nothing(
    bad: object, words: str, client: KitaruClient
) -> None:
    with pytest.raises(KitaruUsageError, match="execution_id=") as caught:
        _flows.echo.run(1, execution_id=bad)  # type: ignore[arg-type]
    assert words in str(caught.value)
    assert client.executions.list() == []
    assert _flows.echo.run(1, execution_id="y" * 255).wait() == 1  # the limit itself is fine


_RACE = """
import sys, time
from tests.durable_time._flows import echo
go_at = float(sys.argv[1])
time.sleep(max(0.0, go_at - time.time()))
handle = echo.run(5, execution_id="race-key")
print(handle.exec_id, flush=True)
handle.wait()
"""


def test_two_processes_racing_with_one_id_start_one_execution(
    any_store: str, client: KitaruClient, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    import time

    go_at = time.time() + 2.0  # both past their imports, then start at the same moment
    racers = [spawn("-c", _RACE, str(go_at)) for _ in range(2)]
    ids = []
    for racer in racers:
        out, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err
        ids.append(out.strip())
    assert ids[0] == ids[1]
    executions = client.executions.list(flow="echo")
    assert [e.exec_id for e in executions] == [ids[0]]
    assert executions[0].run_count == 1
    assert _result(ids[0]) == 5


def _result(exec_id: str) -> object:
    from kitaru.handle import FlowHandle

    return FlowHandle(exec_id, backend=get_backend()).get()
