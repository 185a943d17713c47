"""KitaruClient().artifacts: list and get, including cached outputs, on both stores."""

from __future__ import annotations

import pytest

from kitaru import KitaruBackendError, KitaruClient, checkpoint, flow
from kitaru.client import CallStatus

BIG = "x" * 100_000  # stored as a blob file, not inline


@checkpoint
def double(x: int) -> int:
    return x * 2


@checkpoint
def big_text(n: int) -> str:
    return f"{n}:{BIG}"


@flow
def pipeline(x: int) -> dict[str, object]:
    return {"double": double(x), "head": big_text(x)[:4]}


def test_list_returns_inputs_outputs_and_result(any_store: str) -> None:
    handle = pipeline.run(21)
    assert handle.wait(timeout=30) == {"double": 42, "head": "21:x"}
    artifacts = KitaruClient().artifacts.list(handle.exec_id)

    by_role: dict[str, list[str]] = {}
    for ref in artifacts:
        by_role.setdefault(ref.role, []).append(ref.name)
        assert ref.exec_id == handle.exec_id
    assert by_role == {
        "flow_inputs": ["inputs"],
        "output": ["double", "big_text"],
        "flow_result": ["result"],
    }
    values = {ref.name: ref.load() for ref in artifacts}
    assert values["inputs"] == ((21,), {})
    assert values["double"] == 42
    assert values["big_text"] == "21:" + BIG
    assert values["result"] == {"double": 42, "head": "21:x"}
    outputs = {ref.name: ref for ref in artifacts if ref.role == "output"}
    assert outputs["double"].call_id == "double"
    assert outputs["double"].uri is None  # small: inline in the row
    assert outputs["big_text"].uri is not None
    assert outputs["big_text"].size > 64 * 1024

    # Filters.
    client = KitaruClient()
    assert [r.name for r in client.artifacts.list(handle.exec_id, role="output")] == [
        "double",
        "big_text",
    ]
    assert [r.name for r in client.artifacts.list(handle.exec_id, name="double")] == ["double"]
    assert [
        r.call_id for r in client.artifacts.list(handle.exec_id, producing_call="big_text")
    ] == ["big_text"]


def test_get_by_id_round_trips_every_listed_artifact(any_store: str) -> None:
    handle = pipeline.run(3)
    handle.wait(timeout=30)
    client = KitaruClient()
    for ref in client.artifacts.list(handle.exec_id):
        fetched = client.artifacts.get(ref.artifact_id)
        assert fetched == ref
        assert fetched.load() == ref.load()


def test_cached_outputs_belong_to_the_execution_that_reused_them(any_store: str) -> None:
    first = pipeline.run(5)
    first.wait(timeout=30)
    second = pipeline.run(5)
    assert second.wait(timeout=30) == {"double": 10, "head": "5:xx"}

    client = KitaruClient()
    execution = client.executions.get(second.exec_id)
    assert [(c.call_id, c.call_status) for c in execution.checkpoints] == [
        ("double", CallStatus.CACHED),
        ("big_text", CallStatus.CACHED),
    ]
    assert {c.source_exec_id for c in execution.checkpoints} == {first.exec_id}
    first_outputs = {
        r.name: r.artifact_id for r in client.artifacts.list(first.exec_id, role="output")
    }
    second_outputs = client.artifacts.list(second.exec_id, role="output")
    # The cached calls point at the first execution's stored outputs, not copies.
    assert {r.name: r.artifact_id for r in second_outputs} == first_outputs
    assert {r.name: r.load() for r in second_outputs} == {
        "double": 10,
        "big_text": "5:" + BIG,
    }
    # Its own inputs and result are listed too.
    roles = sorted(r.role for r in client.artifacts.list(second.exec_id))
    assert roles == ["flow_inputs", "flow_result", "output", "output"]
    assert [a.load() for c in execution.checkpoints for a in c.artifacts] == [
        10,
        "5:" + BIG,
    ]


def test_unknown_ids_are_backend_errors(any_store: str) -> None:
    client = KitaruClient()
    with pytest.raises(KitaruBackendError, match="Failed to load artifact 'no-such-artifact'"):
        client.artifacts.get("no-such-artifact")
    with pytest.raises(KitaruBackendError, match="Failed to load execution 'no-such-execution'"):
        client.artifacts.list("no-such-execution")
