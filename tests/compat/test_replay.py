"""Replay as Kitaru 0.21 code uses it (KITARU_CONTRACT.md §3), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

import kitaru
from kitaru import (
    ExecutionStatus,
    FlowHandle,
    KitaruClient,
    KitaruStateError,
    KitaruUsageError,
    KitaruUserCodeError,
    checkpoint,
    flow,
)
from kitaru.replay import (
    ReplayFailureRow,
    ReplayPlanDocument,
    ReplayResultRow,
    ReplayRuntimeContext,
    ReplaySkippedRow,
    ReplaySubmission,
    ReplaySummary,
)

runs: Counter[str] = Counter()
seen: list[Any] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    runs.clear()
    seen.clear()


class Plan(BaseModel):
    topics: list[str]
    depth: int = 1


@dataclass(frozen=True)
class Score:
    value: float
    label: str


# --- flows ---------------------------------------------------------------------------------


@checkpoint
def research(topic: str) -> str:
    runs["research"] += 1
    return f"notes on {topic}"


@checkpoint
def plan_topics(notes: str) -> Plan:
    runs["plan_topics"] += 1
    return Plan(topics=[notes])


@checkpoint
def write_answer(plan: Plan) -> str:
    runs["write_answer"] += 1
    seen.append(kitaru.get_replay_runtime_context())
    return " + ".join(t.upper() for t in plan.topics) + f" (depth {plan.depth})"


@flow
def answer(topic: str, plan: Plan | None = None) -> str:
    notes = research(topic)
    chosen = plan if plan is not None else plan_topics(notes)
    return write_answer(chosen)


@checkpoint
def rate(x: int) -> Score:
    runs["rate"] += 1
    return Score(value=x / 2, label=f"x{x}")


@checkpoint
def pair(x: int):  # type: ignore[no-untyped-def]  # no annotation: the recorded type decides
    runs["pair"] += 1
    return (Plan(topics=[str(x)]), x)


@checkpoint
def unannotated_plan(x: int):  # type: ignore[no-untyped-def]
    runs["unannotated_plan"] += 1
    return Plan(topics=[f"t{x}"])


@checkpoint
def show(score: Score, both: tuple[Plan, int], plan: Plan) -> str:
    runs["show"] += 1
    return f"{score.label}:{score.value}|{both[0].topics[0]}:{both[1]}|{plan.topics[0]}"


@flow
def typed(x: int) -> str:
    return show(rate(x), pair(x), unannotated_plan(x))


@checkpoint
def step(i: int) -> int:
    runs[f"step{i}"] += 1
    return i * 10


@flow
def steps() -> int:
    return step(1) + step(2) + step(3)


@flow
def pinned() -> int:
    return step(1, id="first") + step(2, id="second")


@checkpoint(type="tool_call")
def search(query: str) -> str:
    runs["search"] += 1
    return f"web results for {query}"


@checkpoint
def summarize(text: str) -> str:
    runs["summarize"] += 1
    return f"summary of {text}"


@flow
def agent(query: str) -> str:
    return summarize(search(query))


def fake_search(query: str) -> str:
    """The replacement a code override names (tests.compat.test_replay.fake_search)."""
    runs["fake_search"] += 1
    return f"canned results for {query}"


@checkpoint
def fragile(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative input {x}")
    return x


@flow
def checked(x: int) -> int:
    return fragile(x)


@flow
def empty() -> int:
    return 1


gate = threading.Event()


@checkpoint
def blocked() -> int:
    gate.wait(60)
    return 1


@flow
def slow() -> int:
    return blocked()


@flow
def bodyflags() -> dict[str, Any]:
    return {"replay": kitaru.is_replay(), "context": kitaru.get_replay_runtime_context()}


def _answer_source() -> str:
    handle = answer.run("kitaru")
    assert handle.wait(timeout=30) == "NOTES ON KITARU (depth 1)"
    runs.clear()
    seen.clear()
    return handle.exec_id


def _steps_source() -> str:
    handle = steps.run()
    assert handle.wait(timeout=30) == 60
    runs.clear()
    return handle.exec_id


def _ids() -> list[str]:
    return [e.exec_id for e in KitaruClient().executions.list()]


def _result(submission: ReplaySubmission) -> Any:
    (row,) = submission.results
    return FlowHandle(row.replay_exec_id).get()


# --- the submission -------------------------------------------------------------------------


def test_one_id_waits_and_fails_fast_by_default(any_store: str) -> None:
    source = _answer_source()
    submission = KitaruClient().executions.replay(source, at="write_answer")
    assert isinstance(submission, ReplaySubmission)
    assert isinstance(kitaru.ReplaySubmission, type)
    assert kitaru.ReplaySubmission is ReplaySubmission
    assert re.fullmatch(r"rs-\d{8}T\d{6}Z-[0-9a-f]{8}", submission.submission_id)
    assert submission.at == "write_answer"
    assert submission.wait is True
    assert submission.tag is None
    assert submission.compare_url is None
    (row,) = submission.results
    assert isinstance(row, ReplayResultRow)
    assert row.original_exec_ref == source
    assert row.original_exec_id == source
    assert row.replay_exec_id not in (source, None)
    assert row.status == "completed"
    assert row.handle is None
    assert row.compare_url is None
    assert submission.failures == []
    assert submission.skipped == []
    assert submission.summary == ReplaySummary(submitted=1, completed=1, failed=0, skipped=0)
    assert isinstance(submission.plan, ReplayPlanDocument)
    assert runs == {"write_answer": 1}
    replay = KitaruClient().executions.get(row.replay_exec_id)
    assert replay.original_exec_id == source
    assert replay.status is ExecutionStatus.COMPLETED

    document = submission.to_json()
    assert list(document) == [
        "submission_id",
        "tag",
        "at",
        "wait",
        "plan",
        "results",
        "failures",
        "skipped",
        "summary",
        "compare_url",
    ]
    assert document["results"] == [
        {
            "original_exec_ref": source,
            "original_exec_id": source,
            "replay_exec_id": row.replay_exec_id,
            "status": "completed",
            "compare_url": None,
        }
    ]
    assert document["summary"] == {"submitted": 1, "completed": 1, "failed": 0, "skipped": 0}
    assert document["plan"] == {
        "flow_overrides": {},
        "checkpoint_overrides": {},
        "invocation_overrides": {},
        "skip": [],
    }


def test_several_ids_are_submitted_without_waiting_and_collect_errors(any_store: str) -> None:
    first, second = _answer_source(), _answer_source()
    other = _steps_source()  # has no write_answer: skipped
    client = KitaruClient()
    submission = client.executions.replay(
        [first, second, other, "no-such-execution"],
        at="write_answer",
        checkpoint_overrides={"plan_topics": {"output": {"topics": ["a"]}}},
    )
    assert submission.wait is False
    assert [row.original_exec_ref for row in submission.results] == [first, second]
    assert all(row.status == "submitted" for row in submission.results)
    assert all(isinstance(row.handle, FlowHandle) for row in submission.results)
    (skipped,) = submission.skipped
    assert isinstance(skipped, ReplaySkippedRow)
    assert (skipped.original_exec_ref, skipped.original_exec_id) == (other, other)
    assert "Unknown checkpoint selector 'write_answer'" in skipped.reason
    assert "Available checkpoints:" in skipped.reason
    (failure,) = submission.failures
    assert isinstance(failure, ReplayFailureRow)
    assert failure.original_exec_ref == "no-such-execution"
    assert failure.original_exec_id is None
    assert "no-such-execution" in failure.reason
    assert submission.summary == ReplaySummary(submitted=2, completed=0, failed=1, skipped=1)
    assert submission.plan.matched_targets == {"checkpoint:plan_topics": ["plan_topics"]}
    assert submission.to_json()["plan"]["matched_targets"] == {
        "checkpoint:plan_topics": ["plan_topics"]
    }
    assert "handle" not in submission.to_json()["results"][0]

    assert submission.wait_for_handles() is submission
    for row in submission.results:
        assert FlowHandle(row.replay_exec_id).get() == "A (depth 1)"


def test_on_error_fail_with_several_ids_raises_the_first_error(any_store: str) -> None:
    good, other = _answer_source(), _steps_source()
    with pytest.raises(KitaruStateError, match="Unknown checkpoint selector"):
        KitaruClient().executions.replay([good, other], at="write_answer", on_error="fail")


def test_collect_with_one_id_reports_a_failed_replay_instead_of_raising(any_store: str) -> None:
    handle = checked.run(1)
    assert handle.wait(timeout=30) == 1
    client = KitaruClient()
    submission = client.executions.replay(
        handle.exec_id, at="fragile", flow_overrides={"x": -1}, on_error="collect"
    )
    (row,) = submission.results
    assert row.status == "failed"
    assert submission.summary == ReplaySummary(submitted=1, completed=0, failed=1, skipped=0)
    with pytest.raises(KitaruUserCodeError, match="negative input -1"):
        client.executions.replay(handle.exec_id, at="fragile", flow_overrides={"x": -1})


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"at": "  "}, "at="),
        ({"at": "write_answer", "on_error": "ignore"}, "on_error"),
        ({"at": "write_answer", "checkpoint_overrides": {"research": "x"}}, "mapping"),
        (
            {"at": "write_answer", "checkpoint_overrides": {"research": {"outputs": "x"}}},
            "'output'",
        ),
        ({"at": "write_answer", "skip": [" "]}, "skip"),
        (
            {
                "at": "write_answer",
                "checkpoint_overrides": {"research": {"output": "x", "input": "y"}},
            },
            "both",
        ),
    ],
    ids=["blank-at", "bad-on-error", "entry-not-mapping", "unknown-field", "blank-skip", "in+out"],
)
def test_bad_request_shapes_are_usage_errors(
    any_store: str, kwargs: dict[str, Any], needle: str
) -> None:
    source = _answer_source()
    with pytest.raises(KitaruUsageError) as info:
        KitaruClient().executions.replay(source, **kwargs)
    assert needle in str(info.value)
    assert _ids() == [source]


def test_no_ids_is_a_usage_error(any_store: str) -> None:
    with pytest.raises(KitaruUsageError, match="at least one execution id"):
        KitaruClient().executions.replay([], at="x")


# --- at ---------------------------------------------------------------------------------------


def test_at_matches_call_ids_names_and_0_21_invocation_ids(any_store: str) -> None:
    source = _steps_source()
    client = KitaruClient()
    # "step" is the name of three calls, but also the exact call id of the first.
    assert _result(client.executions.replay(source, at="step")) == 60
    assert runs == {"step1": 1, "step2": 1, "step3": 1}
    for selector in ("step:2", "step_2"):  # ours, and Kitaru 0.21's spelling
        runs.clear()
        assert _result(client.executions.replay(source, at=selector)) == 60
        assert runs == {"step2": 1, "step3": 1}


def test_unknown_ambiguous_and_missing_calls_are_state_errors(any_store: str) -> None:
    client = KitaruClient()
    source = _steps_source()
    with pytest.raises(KitaruStateError) as info:
        client.executions.replay(source, at="nope")
    message = str(info.value)
    assert "Unknown checkpoint selector 'nope'" in message
    assert "Available checkpoints: step (step), step:2 (step), step:3 (step)" in message

    handle = pinned.run()
    assert handle.wait(timeout=30) == 30
    with pytest.raises(KitaruStateError, match=r"ambiguous.*first, second"):
        client.executions.replay(handle.exec_id, at="step")

    nothing = empty.run()
    assert nothing.wait(timeout=30) == 1
    with pytest.raises(KitaruStateError, match="no recorded checkpoint calls"):
        client.executions.replay(nothing.exec_id, at="step")
    assert len(_ids()) == 3  # no replay was created


def test_a_running_source_cannot_be_replayed(any_store: str) -> None:
    gate.clear()
    handle = slow.run()
    try:
        with pytest.raises(KitaruStateError, match="still running"):
            KitaruClient().executions.replay(handle.exec_id, at="blocked")
    finally:
        gate.set()
    assert handle.wait(timeout=30) == 1


# --- overrides --------------------------------------------------------------------------------


def test_output_override_is_converted_into_the_declared_pydantic_type(any_store: str) -> None:
    source = _answer_source()
    submission = KitaruClient().executions.replay(
        source,
        at="write_answer",
        checkpoint_overrides={"plan_topics": {"output": {"topics": ["x", "y"], "depth": "2"}}},
    )
    assert _result(submission) == "X + Y (depth 2)"
    assert runs == {"write_answer": 1}
    replay = KitaruClient().executions.get(submission.results[0].replay_exec_id)
    stored = replay.checkpoints[1].artifacts[0].load()
    assert stored == Plan(topics=["x", "y"], depth=2)


def test_override_that_does_not_fit_is_refused_at_submission(any_store: str) -> None:
    source = _answer_source()
    client = KitaruClient()
    before = [a.artifact_id for a in client.artifacts.list(source)]
    with pytest.raises(KitaruUsageError) as info:
        client.executions.replay(
            source,
            at="write_answer",
            checkpoint_overrides={"plan_topics": {"output": {"topic": "typo"}}},
        )
    message = str(info.value)
    assert "plan_topics" in message
    assert "Plan" in message
    assert "topics" in message
    assert _ids() == [source]
    assert [a.artifact_id for a in client.artifacts.list(source)] == before
    assert runs == {}


def test_outputs_convert_to_dataclasses_tuples_and_recorded_models(any_store: str) -> None:
    handle = typed.run(4)
    assert handle.wait(timeout=30) == "x4:2.0|4:4|t4"
    runs.clear()
    client = KitaruClient()
    submission = client.executions.replay(
        handle.exec_id,
        at="show",
        checkpoint_overrides={
            "rate": {"output": {"value": "1.5", "label": "given"}},  # declared dataclass
            "pair": {"output": [{"topics": ["p"]}, "7"]},  # recorded tuple[Plan, int]
            "unannotated_plan": {"output": {"topics": ["u"]}},  # recorded Plan
        },
    )
    assert _result(submission) == "given:1.5|p:7|u"
    assert runs == {"show": 1}

    for name, value, type_name in [
        ("rate", {"value": "high"}, "Score"),
        ("pair", [{"topics": "p"}, 7], "Plan"),
        ("unannotated_plan", ["not", "a", "plan"], "Plan"),
    ]:
        with pytest.raises(KitaruUsageError) as info:
            client.executions.replay(
                handle.exec_id, at="show", checkpoint_overrides={name: {"output": value}}
            )
        assert name in str(info.value)
        assert type_name in str(info.value)
    with pytest.raises(KitaruUsageError, match=r"'scor'.*Did you mean 'score'"):
        client.executions.replay(
            handle.exec_id, at="show", invocation_overrides={"show": {"input": {"scor": {}}}}
        )
    assert len(_ids()) == 2


def test_flow_overrides_are_validated_against_the_signature(any_store: str) -> None:
    source = _answer_source()
    client = KitaruClient()
    submission = client.executions.replay(
        source, at="research", flow_overrides={"topic": "other", "plan": {"topics": ["z"]}}
    )
    assert _result(submission) == "Z (depth 1)"
    assert runs == {"research": 1, "write_answer": 1}
    with pytest.raises(KitaruUsageError, match=r"'topc'.*Did you mean 'topic'"):
        client.executions.replay(source, at="research", flow_overrides={"topc": "x"})
    with pytest.raises(KitaruUsageError, match="plan"):
        client.executions.replay(source, at="research", flow_overrides={"plan": {"depth": 2}})
    assert len(_ids()) == 2


def test_input_override_reruns_the_call_with_new_arguments(any_store: str) -> None:
    source = _answer_source()
    client = KitaruClient()
    # A bare value for a one-parameter checkpoint, before `at`: research reruns, the
    # calls after it up to `at` still reuse their recorded outputs.
    submission = client.executions.replay(
        source,
        at="write_answer",
        checkpoint_overrides={"research": {"input": "durability"}},
    )
    assert _result(submission) == "NOTES ON KITARU (depth 1)"
    assert runs == {"research": 1, "write_answer": 1}
    replay = client.executions.get(submission.results[0].replay_exec_id)
    assert replay.checkpoints[0].artifacts[0].load() == "notes on durability"

    runs.clear()
    submission = client.executions.replay(
        source,
        at="write_answer",
        invocation_overrides={"write_answer": {"input": {"plan": {"topics": ["q"], "depth": 3}}}},
    )
    assert _result(submission) == "Q (depth 3)"
    context = seen[-1]
    assert isinstance(context, ReplayRuntimeContext)
    assert context.at == "write_answer"
    assert context.input_overrides == {"write_answer": {"plan": Plan(topics=["q"], depth=3)}}

    # One parameter: a mapping that does not name it is the bare value, checked as a Plan.
    with pytest.raises(KitaruUsageError, match=r"input 'plan' does not fit type Plan"):
        client.executions.replay(
            source,
            at="write_answer",
            invocation_overrides={"write_answer": {"input": {"plans": {}}}},
        )


def test_invocation_level_wins_and_input_with_output_across_levels_is_refused(
    any_store: str,
) -> None:
    source = _steps_source()
    client = KitaruClient()
    submission = client.executions.replay(
        source,
        at="step:3",
        checkpoint_overrides={"step": {"output": 1}},
        invocation_overrides={"step:2": {"output": 2}},
    )
    # step:3 is a "step" call too: its checkpoint-level output means it does not run.
    assert _result(submission) == 1 + 2 + 1
    assert runs == {}
    assert submission.plan.matched_targets == {
        "checkpoint:step": ["step", "step:2", "step:3"],
        "invocation:step:2": ["step:2"],
    }

    with pytest.raises(KitaruUsageError, match="both an 'input' and an 'output'"):
        client.executions.replay(
            source,
            at="step:3",
            checkpoint_overrides={"step": {"output": 1}},
            invocation_overrides={"step:2": {"input": 5}},
        )
    with pytest.raises(KitaruStateError, match="never called"):
        client.executions.replay(source, at="step", checkpoint_overrides={"nope": {"output": 1}})
    with pytest.raises(KitaruStateError, match="Unknown checkpoint selector 'nope'"):
        client.executions.replay(source, at="step", invocation_overrides={"nope": {"output": 1}})


def test_code_override_runs_the_named_function_for_tool_calls_only(any_store: str) -> None:
    handle = agent.run("durable runtimes")
    assert handle.wait(timeout=30) == "summary of web results for durable runtimes"
    runs.clear()
    client = KitaruClient()
    submission = client.executions.replay(
        handle.exec_id,
        at="search",
        checkpoint_overrides={"search": {"code": f"{__name__}.fake_search"}},
    )
    assert _result(submission) == "summary of canned results for durable runtimes"
    assert runs == {"fake_search": 1, "summarize": 1}

    with pytest.raises(KitaruUsageError, match="not a tool call"):
        client.executions.replay(
            handle.exec_id,
            at="search",
            checkpoint_overrides={"summarize": {"code": f"{__name__}.fake_search"}},
        )
    with pytest.raises(KitaruUsageError, match="cannot be imported"):
        client.executions.replay(
            handle.exec_id,
            at="search",
            checkpoint_overrides={"search": {"code": f"{__name__}.no_such_function"}},
        )
    with pytest.raises(KitaruUsageError, match="not an LLM call"):
        client.executions.replay(
            handle.exec_id, at="search", checkpoint_overrides={"search": {"model": "gpt-x"}}
        )
    assert len(_ids()) == 2


def test_skip_reuses_recorded_outputs_after_at(any_store: str) -> None:
    source = _steps_source()
    client = KitaruClient()
    submission = client.executions.replay(source, at="step:2", skip=["step:3"])
    assert _result(submission) == 60
    assert runs == {"step2": 1}
    assert submission.plan.skip == ["step:3"]
    assert submission.plan.matched_targets == {"skip:step:3": ["step:3"]}

    with pytest.raises(KitaruStateError, match="Unknown checkpoint selector 'nope'"):
        client.executions.replay(source, at="step:2", skip=["nope"])
    with pytest.raises(KitaruUsageError, match="both skipped and overridden"):
        client.executions.replay(
            source,
            at="step:2",
            skip=["step:3"],
            invocation_overrides={"step:3": {"output": 0}},
        )


def test_tag_is_added_to_tags_and_metadata(any_store: str) -> None:
    source = _steps_source()
    client = KitaruClient()
    submission = client.executions.replay(source, at="step:3", tag="experiment-7")
    assert submission.tag == "experiment-7"
    replay = client.executions.get(submission.results[0].replay_exec_id)
    assert replay.metadata["replay_tag"] == "experiment-7"
    assert replay.metadata["tags"] == ["experiment-7"]
    assert client.executions.get(source).metadata.get("replay_tag") is None


def test_replay_runtime_context_inside_a_replay_only(any_store: str) -> None:
    assert kitaru.get_replay_runtime_context() is None
    assert kitaru.is_replay() is False
    handle = bodyflags.run()
    assert handle.wait(timeout=30) == {"replay": False, "context": None}

    source = _answer_source()
    submission = KitaruClient().executions.replay(
        source,
        at="write_answer",
        checkpoint_overrides={"plan_topics": {"output": {"topics": ["m"]}}},
    )
    assert _result(submission) == "M (depth 1)"
    context = seen[-1]
    assert isinstance(context, kitaru.ReplayRuntimeContext)
    assert context.at == "write_answer"
    assert context.output_mocks == {"plan_topics": Plan(topics=["m"])}
    assert context.code_overrides == {}
    assert context.model_overrides == {}
    assert context.input_overrides == {}


# --- the other entry points and the <=0.18 spelling ------------------------------------------


def test_execution_and_flow_replay_return_submissions(any_store: str) -> None:
    source = _steps_source()
    execution = KitaruClient().executions.get(source)
    submission = execution.replay(at="step:3", invocation_overrides={"step:2": {"output": 5}})
    assert isinstance(submission, ReplaySubmission)
    assert _result(submission) == 10 + 5 + 30

    runs.clear()
    submission = steps.replay(source, at="step:3", retries=2, wait=False)
    (row,) = submission.results
    assert row.handle is not None
    assert row.handle.wait(timeout=30) == 60
    assert KitaruClient().executions.get(row.replay_exec_id).config["retries"] == 2
    assert runs == {"step3": 1}
    with pytest.raises(KitaruUsageError, match="belongs to flow 'steps'"):
        answer.replay(source, at="step")


def test_legacy_spelling_still_works(any_store: str) -> None:
    source = _answer_source()
    client = KitaruClient()
    submission = client.executions.replay(
        source,
        from_="write_answer",
        overrides={"checkpoint.plan_topics": {"topics": ["old"]}},
        topic="ignored before at",
    )
    assert _result(submission) == "OLD (depth 1)"
    assert submission.plan.checkpoint_overrides == {"plan_topics": {"output": {"topics": ["old"]}}}
    assert submission.plan.flow_overrides == {"topic": "ignored before at"}
    # The object those releases returned had the new execution's id (and its source's).
    (row,) = submission.results
    assert submission.exec_id == row.replay_exec_id
    assert submission.original_exec_id == source
    assert client.executions.get(submission.exec_id).original_exec_id == source

    # exec_id= instead of the first argument, on the flow and on the client.
    by_flow = answer.replay(exec_id=source, from_="write_answer")
    assert by_flow.original_exec_id == source
    from kitaru import FlowHandle

    assert _result(by_flow) == FlowHandle(source).wait(timeout=30)  # nothing overridden
    by_client = client.executions.replay(exec_id=source, at="write_answer")
    assert by_client.original_exec_id == source
    with pytest.raises(KitaruUsageError, match="execution id"):
        client.executions.replay(at="write_answer")

    several = client.executions.replay([source, source], at="write_answer", wait=False)
    several.wait_for_handles()
    with pytest.raises(KitaruStateError, match="no single exec_id"):
        _ = several.exec_id


@pytest.mark.parametrize(
    ("keyword", "suggestion"),
    [("on_eror", "on_error"), ("invocation_override", "invocation_overrides"), ("topik", "topic")],
)
def test_unknown_keyword_is_never_taken_as_a_flow_input(
    any_store: str, keyword: str, suggestion: str
) -> None:
    source = _answer_source()
    with pytest.raises(KitaruUsageError) as info:
        KitaruClient().executions.replay(source, at="write_answer", **{keyword: "collect"})
    message = str(info.value)
    assert repr(keyword) in message
    assert f"Did you mean {suggestion!r}" in message
    assert _ids() == [source]
    with pytest.raises(KitaruUsageError, match=repr(keyword)):
        answer.replay(source, at="write_answer", **{keyword: "collect"})
