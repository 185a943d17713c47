"""executions.replay / Flow.replay: reuse before ``at``, run live from ``at``, overrides."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

import kitaru
from kitaru import (
    ExecutionStatus,
    FailureOrigin,
    FlowHandle,
    KitaruBackendError,
    KitaruClient,
    KitaruDivergenceError,
    KitaruStateError,
    KitaruUsageError,
    checkpoint,
    flow,
)
from kitaru.client import CallStatus, Execution
from kitaru.replay import ReplaySubmission

runs: Counter[str] = Counter()
replaying: list[bool] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    runs.clear()
    replaying.clear()


@checkpoint
def research(topic: str) -> str:
    runs["research"] += 1
    return f"notes on {topic}"


@checkpoint
def draft(notes: str) -> str:
    runs["draft"] += 1
    return f"draft({notes})"


@checkpoint
def review(text: str, tone: str) -> str:
    runs["review"] += 1
    replaying.append(kitaru.is_replay())
    return text.upper() if tone == "loud" else text


@flow
def writer(topic: str, tone: str = "loud") -> str:
    return review(draft(research(topic)), tone)


@checkpoint
def step(i: int) -> int:
    runs[f"step{i}"] += 1
    return i * 100


@flow
def stepper() -> int:
    return step(1) + step(2) + step(3)


@flow
def unrelated() -> int:
    return 0


def _source() -> str:
    handle = writer.run("kitaru")
    assert handle.wait(timeout=20) == "DRAFT(NOTES ON KITARU)"
    runs.clear()
    replaying.clear()
    return handle.exec_id


def _replayed(submission: ReplaySubmission) -> Execution:
    """The one replay execution of a submission (replay returns a ReplaySubmission)."""
    (row,) = submission.results
    return KitaruClient().executions.get(row.replay_exec_id)


def _calls(execution: Execution) -> list[tuple[str, CallStatus]]:
    return [(c.call_id, c.call_status) for c in execution.checkpoints]


def _snapshot(exec_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    client = KitaruClient()
    return (
        client.executions.get(exec_id).to_dict(),
        [a.to_dict() for a in client.artifacts.list(exec_id)],
    )


def test_replay_reuses_before_at_and_runs_at_and_after_live(any_store: str) -> None:
    source_id = _source()
    client = KitaruClient()
    source = client.executions.get(source_id)
    before = _snapshot(source_id)

    replay = _replayed(client.executions.replay(source_id, at="draft", wait=True))
    assert replay.exec_id != source_id
    assert replay.original_exec_id == source_id
    assert replay.flow_name == "writer"
    assert replay.status is ExecutionStatus.COMPLETED
    assert FlowHandle(replay.exec_id).get() == "DRAFT(NOTES ON KITARU)"
    # research was reused without running; draft and review ran again although the
    # cross-run cache holds matching outputs for them.
    assert runs == {"draft": 1, "review": 1}
    assert replaying == [True]
    assert _calls(replay) == [
        ("research", CallStatus.REUSED),
        ("draft", CallStatus.COMPLETED),
        ("review", CallStatus.COMPLETED),
    ]
    reused = replay.checkpoints[0]
    assert reused.source_exec_id == source_id
    assert reused.attempts == []
    assert reused.artifacts[0].artifact_id == source.checkpoints[0].artifacts[0].artifact_id
    assert reused.artifacts[0].load() == "notes on kitaru"
    assert [(a.attempt, a.run) for a in replay.checkpoints[1].attempts] == [(1, 1)]
    # The source is untouched.
    assert _snapshot(source_id) == before
    assert [e.exec_id for e in client.executions.list()] == [replay.exec_id, source_id]


def test_replay_at_a_call_id_of_a_repeated_checkpoint(any_store: str) -> None:
    handle = stepper.run()
    assert handle.wait(timeout=20) == 600
    runs.clear()
    client = KitaruClient()
    replay = _replayed(client.executions.replay(handle.exec_id, at="step:2", wait=True))
    assert replay.status is ExecutionStatus.COMPLETED
    assert FlowHandle(replay.exec_id).get() == 600
    assert runs == {"step2": 1, "step3": 1}
    assert _calls(replay) == [
        ("step", CallStatus.REUSED),
        ("step:2", CallStatus.COMPLETED),
        ("step:3", CallStatus.COMPLETED),
    ]
    # An override by call id touches only that call.
    runs.clear()
    edited = _replayed(
        client.executions.replay(
            handle.exec_id, at="step:3", invocation_overrides={"step:2": {"output": 5}}
        )
    )
    assert FlowHandle(edited.exec_id).get() == 100 + 5 + 300
    assert runs == {"step3": 1}


def test_a_checkpoint_name_called_under_several_ids_is_ambiguous(any_store: str) -> None:
    @flow
    def pinned() -> int:
        return step(1, id="first") + step(2, id="second")

    handle = pinned.run()
    assert handle.wait(timeout=20) == 300
    runs.clear()
    client = KitaruClient()
    with pytest.raises(KitaruStateError) as info:
        client.executions.replay(handle.exec_id, at="step")
    message = str(info.value)
    assert "ambiguous" in message
    assert "first" in message
    assert "second" in message
    # 0.21: an invocation override names exactly one call.
    with pytest.raises(KitaruStateError, match="first, second"):
        client.executions.replay(
            handle.exec_id, at="second", invocation_overrides={"step": {"output": 0}}
        )
    assert [e.exec_id for e in client.executions.list()] == [handle.exec_id]

    replay = _replayed(client.executions.replay(handle.exec_id, at="second", wait=True))
    assert FlowHandle(replay.exec_id).get() == 300
    assert runs == {"step2": 1}
    assert _calls(replay) == [("first", CallStatus.REUSED), ("second", CallStatus.COMPLETED)]


def test_replay_at_the_first_checkpoint_reuses_nothing(any_store: str) -> None:
    source_id = _source()
    replay = _replayed(KitaruClient().executions.replay(source_id, at="research", wait=True))
    assert runs == {"research": 1, "draft": 1, "review": 1}
    assert [c.call_status for c in replay.checkpoints] == [CallStatus.COMPLETED] * 3


def test_override_before_at_replaces_the_recorded_output(any_store: str) -> None:
    source_id = _source()
    before = _snapshot(source_id)
    replay = _replayed(
        KitaruClient().executions.replay(
            source_id, at="draft", checkpoint_overrides={"research": {"output": "edited notes"}}
        )
    )
    assert FlowHandle(replay.exec_id).get() == "DRAFT(EDITED NOTES)"
    assert runs == {"draft": 1, "review": 1}
    overridden = replay.checkpoints[0]
    assert overridden.call_status is CallStatus.REUSED
    assert overridden.metadata.get("overridden") is True
    assert overridden.artifacts[0].load() == "edited notes"
    assert _snapshot(source_id) == before


@pytest.mark.parametrize(
    "spelling",
    [
        {"checkpoint_overrides": {"review": {"output": "FINAL WORD"}}},
        {"invocation_overrides": {"review": {"output": "FINAL WORD"}}},
        {"overrides": {"checkpoint.review": "FINAL WORD"}},  # the <=0.18 spelling
    ],
    ids=["checkpoint", "invocation", "legacy"],
)
def test_override_after_at_is_returned_instead_of_running(
    any_store: str, spelling: dict[str, Any]
) -> None:
    source_id = _source()
    replay = _replayed(KitaruClient().executions.replay(source_id, at="draft", **spelling))
    assert FlowHandle(replay.exec_id).get() == "FINAL WORD"
    assert runs == {"draft": 1}
    assert _calls(replay) == [
        ("research", CallStatus.REUSED),
        ("draft", CallStatus.COMPLETED),
        ("review", CallStatus.REUSED),
    ]
    assert replay.checkpoints[2].metadata.get("overridden") is True
    assert replay.checkpoints[2].artifacts[0].load() == "FINAL WORD"


def test_override_of_the_at_checkpoint_itself(any_store: str) -> None:
    source_id = _source()
    replay = _replayed(
        KitaruClient().executions.replay(
            source_id, at="draft", checkpoint_overrides={"draft": {"output": "my own draft"}}
        )
    )
    assert FlowHandle(replay.exec_id).get() == "MY OWN DRAFT"
    assert runs == {"review": 1}


def test_old_spelling_from_overrides_and_flow_inputs_as_keywords(any_store: str) -> None:
    source_id = _source()
    replay = _replayed(
        KitaruClient().executions.replay(
            source_id,
            from_="review",
            overrides={"checkpoint.research": "ignored: research is before the live part"},
            tone="quiet",
            wait=True,
        )
    )
    # draft is reused from the source; review runs live with the new flow input.
    assert FlowHandle(replay.exec_id).get() == "draft(notes on kitaru)"
    assert runs == {"review": 1}
    assert replay.checkpoints[0].artifacts[0].load() == (
        "ignored: research is before the live part"
    )
    inputs = [a for a in KitaruClient().artifacts.list(replay.exec_id) if a.role == "flow_inputs"]
    # The inputs are stored re-bound to the flow's signature.
    assert inputs[0].load() == (("kitaru", "quiet"), {})


def test_flow_overrides_change_the_inputs_of_the_live_part(any_store: str) -> None:
    source_id = _source()
    replay = _replayed(
        KitaruClient().executions.replay(
            source_id, at="research", flow_overrides={"topic": "durability"}, wait=True
        )
    )
    assert FlowHandle(replay.exec_id).get() == "DRAFT(NOTES ON DURABILITY)"
    assert runs == {"research": 1, "draft": 1, "review": 1}


def test_flow_replay_method(any_store: str) -> None:
    source_id = _source()
    # 0.21: my_flow.replay returns a ReplaySubmission (waited for: one id).
    submission = writer.replay(
        source_id, at="review", checkpoint_overrides={"draft": {"output": "short"}}, tone="loud"
    )
    assert isinstance(submission, ReplaySubmission)
    (row,) = submission.results
    assert row.status == "completed"
    assert FlowHandle(row.replay_exec_id).get() == "SHORT"
    assert runs == {"review": 1}
    replay = KitaruClient().executions.get(row.replay_exec_id)
    assert replay.original_exec_id == source_id

    with pytest.raises(KitaruUsageError, match="writer"):
        unrelated.replay(source_id, at="review")


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"at": "nope"}, KitaruStateError, "nope"),
        ({"at": "draft:2"}, KitaruStateError, "draft:2"),
        ({"from_": "missing"}, KitaruStateError, "missing"),
        (
            {"at": "draft", "checkpoint_overrides": {"nope": {"output": 1}}},
            KitaruStateError,
            "nope",
        ),
        ({"at": "draft", "checkpoint_overrides": {"research": 1}}, KitaruUsageError, "mapping"),
        ({"at": "draft", "overrides": {"research": "x"}}, KitaruUsageError, "research"),
        ({"at": "draft", "overrides": {"checkpoint.nope": 1}}, KitaruStateError, "nope"),
        ({"at": "draft", "flow_overrides": {"colour": "red"}}, KitaruUsageError, "colour"),
        ({"at": "draft", "colour": "red"}, KitaruUsageError, "colour"),
        (
            {"at": "draft", "checkpoint_overrides": {"research": {"output": threading.Lock()}}},
            KitaruUsageError,
            "research",
        ),
        ({}, KitaruUsageError, "at="),
        ({"at": "draft", "from_": "review"}, KitaruUsageError, "from_"),
    ],
    ids=[
        "unknown-at",
        "unknown-call-id",
        "unknown-from",
        "unknown-override",
        "override-not-an-entry",
        "unprefixed-old-override",
        "unknown-old-override",
        "unknown-flow-input",
        "unknown-flow-input-keyword",
        "unstorable-override",
        "no-selector",
        "both-selectors",
    ],
)
def test_bad_replay_requests_record_nothing(
    any_store: str, kwargs: dict[str, Any], error: type[Exception], needle: str
) -> None:
    source_id = _source()
    client = KitaruClient()
    before = _snapshot(source_id)
    with pytest.raises(error) as info:
        client.executions.replay(source_id, **kwargs)
    assert needle in str(info.value)
    assert [e.exec_id for e in client.executions.list()] == [source_id]
    assert _snapshot(source_id) == before
    assert runs == {}


def test_unknown_selector_lists_the_calls_and_unknown_source_is_named(any_store: str) -> None:
    source_id = _source()
    client = KitaruClient()
    with pytest.raises(KitaruStateError) as info:
        client.executions.replay(source_id, at="nope")
    for call_id in ("research", "draft", "review"):
        assert call_id in str(info.value)
    with pytest.raises(KitaruBackendError, match="Failed to load execution 'no-such-source'"):
        client.executions.replay("no-such-source", at="draft")


def test_replay_onto_changed_code_that_skips_a_reused_call_diverges(any_store: str) -> None:
    @checkpoint
    def a() -> str:
        runs["a"] += 1
        return "a"

    @checkpoint
    def b() -> str:
        runs["b"] += 1
        return "b"

    @checkpoint
    def c(x: str) -> str:
        runs["c"] += 1
        return x + "c"

    @flow
    def evolving() -> str:
        return c(a() + b())

    handle = evolving.run()
    assert handle.wait(timeout=20) == "abc"
    before = _snapshot(handle.exec_id)
    runs.clear()

    # The code changes: the flow no longer calls a() before c().
    @flow  # type: ignore[no-redef]
    def evolving() -> str:
        return c(b())

    (row,) = KitaruClient().executions.replay(handle.exec_id, at="c", wait=False).results
    replay = KitaruClient().executions.get(row.replay_exec_id)
    with pytest.raises(KitaruDivergenceError) as info:
        FlowHandle(replay.exec_id).wait(timeout=20)
    message = str(info.value)
    assert "recorded: a (a), b (b)" in message
    assert "now:      b (b), c (c)" in message
    assert runs == {}  # c never ran
    failed = KitaruClient().executions.get(replay.exec_id)
    assert failed.status is ExecutionStatus.FAILED
    assert failed.failure is not None
    assert failed.failure.origin is FailureOrigin.DIVERGENCE
    assert _snapshot(handle.exec_id) == before


def test_replay_onto_code_that_calls_another_checkpoint_under_a_reused_id(
    any_store: str,
) -> None:
    @checkpoint
    def first() -> int:
        return 1

    @checkpoint
    def other() -> int:
        runs["other"] += 1
        return 2

    @checkpoint
    def last(x: int) -> int:
        return x

    @flow
    def renamed() -> int:
        return last(first(id="one"))

    handle = renamed.run()
    assert handle.wait(timeout=20) == 1

    @flow  # type: ignore[no-redef]
    def renamed() -> int:
        return last(other(id="one"))

    (row,) = KitaruClient().executions.replay(handle.exec_id, at="last", wait=False).results
    replay = KitaruClient().executions.get(row.replay_exec_id)
    with pytest.raises(KitaruDivergenceError) as info:
        FlowHandle(replay.exec_id).wait(timeout=20)
    assert "'first'" in str(info.value)
    assert "'other'" in str(info.value)
    assert runs == {}


@checkpoint
def count_topics(n: int) -> int:
    return n


@checkpoint
def look_up(i: int) -> int:
    return i * 10


@checkpoint
def total(values: list[int]) -> int:
    return sum(values)


@flow
def fan(n: int) -> int:
    topics = count_topics(n)
    return total([look_up(i) for i in range(topics)])


def test_an_override_that_changes_the_path_before_at_says_to_replay_earlier(
    any_store: str,
) -> None:
    source = fan.run(3)
    assert source.wait() == 30
    client = KitaruClient()

    # One topic instead of three: look_up:2 and look_up:3 are not reached before `at`.
    with pytest.raises(KitaruDivergenceError) as info:
        client.executions.replay(
            source.exec_id, at="total", checkpoint_overrides={"count_topics": {"output": 1}}
        )
    message = str(info.value)
    assert f"This is a replay of {source.exec_id}" in message
    assert "replay from an earlier checkpoint" in message
    assert "The flow's code changed" not in message

    # Replaying from the first call whose inputs change works.
    submission = client.executions.replay(
        source.exec_id, at="look_up", checkpoint_overrides={"count_topics": {"output": 1}}
    )
    replay_id = submission.results[0].replay_exec_id
    assert FlowHandle(replay_id).get() == 0
