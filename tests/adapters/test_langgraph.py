"""KitaruGraphRunner: durable LangGraph nodes, crash + resume, replay, strategies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._extras import need

need("langgraph", "langgraph")

from kitaru import KitaruClient, KitaruUsageError  # noqa: E402
from kitaru.client import CallStatus  # noqa: E402
from tests.adapters import _lg_flows  # noqa: E402
from tests.adapters._support import crash_child, ledger  # noqa: E402

# plus: 2+1=3, double: 6, square: 36
EXPECTED = {"n": 36, "trail": ["plus", "double", "square"]}


@pytest.fixture
def ledger_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.txt"
    monkeypatch.setenv("KT_LEDGER", str(path))
    return path


def test_nodes_are_durable_calls_marked_as_adapter_calls(ledger_path: Path) -> None:
    handle = _lg_flows.nodes_flow.run(2)
    assert handle.wait(timeout=30) == EXPECTED
    calls = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert [c.call_id for c in calls] == ["plus_node", "double_node", "square_node"]
    assert {
        (c.checkpoint_type, c.checkpoint_origin, c.adapter, c.adapter_checkpoint_kind)
        for c in calls
    } == {("node", "adapter", "langgraph", "node")}
    assert ledger(ledger_path) == {"plus": 1, "double": 1, "square": 1}


def test_crash_in_a_node_then_resume_runs_only_the_rest(ledger_path: Path, tmp_path: Path) -> None:
    exec_id = crash_child(
        "from tests.adapters._lg_flows import main; main()",
        cwd=tmp_path,
        ledger_path=ledger_path,
        hang_in="square",
    )
    client = KitaruClient()
    resumed = client.executions.resume(exec_id, wait=True)
    assert resumed.status.value == "completed"
    assert client.executions.get(exec_id).checkpoints[-1].output.load() == {  # type: ignore[union-attr]
        "n": 36,
        "trail": ["square"],
    }
    # plus and double ran once (in the dead child); only square ran again.
    assert ledger(ledger_path) == {"plus": 1, "double": 1, "square": 2, "square hanging": 1}


def test_parallel_nodes_resume_in_any_order(ledger_path: Path, tmp_path: Path) -> None:
    exec_id = crash_child(
        "from tests.adapters._lg_flows import main; main('parallel')",
        cwd=tmp_path,
        ledger_path=ledger_path,
        hang_in="left",
    )
    resumed = KitaruClient().executions.resume(exec_id, wait=True)
    assert resumed.status.value == "completed"
    # right finished before the crash: its recorded update is reused although the
    # resumed run reaches it after left has gone live.
    assert ledger(ledger_path) == {"left": 2, "left hanging": 1, "right": 1, "join": 1}
    calls = KitaruClient().executions.get(exec_id).checkpoints
    assert sorted(c.call_id for c in calls) == ["join_node", "left_node", "right_node"]


def test_replay_reuses_nodes_before_at(ledger_path: Path) -> None:
    handle = _lg_flows.nodes_flow.run(2)
    handle.wait(timeout=30)
    submission = KitaruClient().executions.replay(
        handle.exec_id,
        at="square_node",
        invocation_overrides={"double_node": {"output": {"n": 10, "trail": ["double"]}}},
    )
    replay = KitaruClient().executions.get(submission.results[0].replay_exec_id)
    assert [c.call_status for c in replay.checkpoints] == [
        CallStatus.REUSED,
        CallStatus.REUSED,
        CallStatus.COMPLETED,
    ]
    # square ran live on the overridden state (10 * 10), plus and double did not rerun.
    assert replay.checkpoints[-1].output.load() == {"n": 100, "trail": ["square"]}  # type: ignore[union-attr]
    assert ledger(ledger_path) == {"plus": 1, "double": 1, "square": 2}


def test_stream_graph_call_and_inside_a_checkpoint(ledger_path: Path) -> None:
    client = KitaruClient()
    streamed = _lg_flows.streaming_flow.run(2)
    assert streamed.wait(timeout=30) == [
        {"plus": {"n": 3, "trail": ["plus"]}},
        {"double": {"n": 6, "trail": ["double"]}},
        {"square": {"n": 36, "trail": ["square"]}},
    ]

    whole = _lg_flows.async_graph_call_flow.run(2)
    assert whole.wait(timeout=30) == EXPECTED
    (call,) = client.executions.get(whole.exec_id).checkpoints
    assert (call.call_id, call.checkpoint_type, call.adapter_checkpoint_kind) == (
        "numbers_graph",
        "graph_call",
        "graph_call",
    )

    inline = _lg_flows.in_checkpoint_flow.run(2)
    assert inline.wait(timeout=30) == EXPECTED
    (step,) = client.executions.get(inline.exec_id).checkpoints
    assert step.checkpoint_origin == "user"
    assert [c["name"] for c in step.metadata["kitaru_adapter_calls"]] == [
        "plus_node",
        "double_node",
        "square_node",
    ]


@pytest.mark.parametrize("flow_name", ["interrupt_flow", "async_interrupt_flow"])
def test_interrupt_pauses_the_graph_and_resume_runs_the_node_again(
    ledger_path: Path, flow_name: str
) -> None:
    handle = getattr(_lg_flows, flow_name).run(2)
    assert handle.wait(timeout=30) == {
        "questions": ["add what to 3?"],
        "final": {"n": 8, "trail": ["plus", "ask"]},
    }
    execution = KitaruClient().executions.get(handle.exec_id)
    # The interrupted node is no failure: its call records the interrupt, and the
    # Command(resume=...) invoke runs it again as a call of its own.
    assert execution.status.value == "completed"
    assert [(c.call_id, c.call_status) for c in execution.checkpoints] == [
        ("plus_node", CallStatus.COMPLETED),
        ("ask_node", CallStatus.COMPLETED),
        ("ask_node:2", CallStatus.COMPLETED),
    ]
    assert ledger(ledger_path) == {"plus": 1, "ask": 2}

    # A replay from the resumed node reuses the interrupted call: LangGraph sees the
    # same interrupt, and the node runs once more, on the resume value.
    replay = KitaruClient().executions.replay(handle.exec_id, at="ask_node:2")
    replayed = KitaruClient().executions.get(replay.results[0].replay_exec_id)
    assert replayed.status.value == "completed"
    assert [c.call_status for c in replayed.checkpoints] == [
        CallStatus.REUSED,
        CallStatus.REUSED,
        CallStatus.COMPLETED,
    ]
    assert ledger(ledger_path) == {"plus": 1, "ask": 3}


def test_bad_strategy_is_a_usage_error() -> None:
    from kitaru.adapters.langgraph import KitaruGraphRunner

    with pytest.raises(KitaruUsageError, match="checkpoint_strategy"):
        KitaruGraphRunner(_lg_flows.build(), checkpoint_strategy="steps")  # type: ignore[arg-type]
