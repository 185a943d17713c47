"""Flow inputs are checked against the flow's type hints at ``.run()`` (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from kitaru import KitaruClient, KitaruUsageError, checkpoint, flow
from kitaru._backend import get_backend


class Plan(BaseModel):
    topic: str
    depth: int = 1


@dataclass
class Budget:
    tokens: int


@flow
def typed(count: int, plan: Plan, budget: Budget | None = None, *, label: str = "x") -> str:
    assert isinstance(count, int)
    assert isinstance(plan, Plan)
    assert budget is None or isinstance(budget, Budget)
    return f"{count}:{plan.topic}:{plan.depth}:{budget.tokens if budget else '-'}:{label}"


@flow
def untyped(a, b=2):  # type: ignore[no-untyped-def]
    return [a, b]


@flow
def loose(a: Any, *rest: int, **extra: float) -> list[Any]:
    return [a, list(rest), extra]


def _count() -> int:
    return len(get_backend().store.list_executions())


def test_inputs_are_coerced_as_pydantic_does(any_store: str) -> None:
    handle = typed.run("3", {"topic": "kitaru", "depth": "2"}, budget={"tokens": 5})
    assert handle.wait() == "3:kitaru:2:5:x"
    # The stored inputs are the validated values: a resume or replay sees them too.
    inputs = KitaruClient().executions.get(handle.exec_id)
    record = get_backend().store.require_execution(inputs.exec_id)
    args, kwargs = get_backend().load_artifact(record.inputs_artifact_id or "")
    assert args[0] == 3
    assert args[1] == Plan(topic="kitaru", depth=2)
    assert kwargs == {"budget": Budget(tokens=5)}
    # Instances of the annotated types are taken as they are.
    assert typed.run(1, Plan(topic="t"), label="y").wait() == "1:t:1:-:y"


def test_a_value_that_does_not_fit_names_parameter_type_and_value(any_store: str) -> None:
    with pytest.raises(KitaruUsageError) as info:
        typed.run("abc", {"topic": "t"})
    message = str(info.value)
    assert "flow 'typed'" in message
    assert "'count'" in message
    assert "int" in message
    assert "'abc'" in message
    with pytest.raises(KitaruUsageError, match=r"'plan' expects Plan.*'depth': 'deep'"):
        typed.run(1, {"topic": "t", "depth": "deep"})
    with pytest.raises(KitaruUsageError, match=r"'label' expects str, got 5"):
        typed.run(1, {"topic": "t"}, label=5)
    assert _count() == 0  # nothing recorded for a rejected call


def test_unexpected_keyword_is_named_with_the_closest_parameter(any_store: str) -> None:
    with pytest.raises(
        KitaruUsageError, match=r"unexpected keyword argument 'lable'.*Did you mean 'label'\?"
    ):
        typed.run(1, {"topic": "t"}, lable="y")
    assert _count() == 0


def test_missing_required_argument_is_named(any_store: str) -> None:
    with pytest.raises(KitaruUsageError, match=r"flow 'typed' is missing.*argument 'plan'"):
        typed.run(1)
    assert _count() == 0


def test_unannotated_and_any_parameters_pass_through(any_store: str) -> None:
    marker = {"keep": ("as", "is")}
    assert untyped.run("abc", b=marker).wait() == ["abc", marker]
    assert untyped.inputs.adapters() == {}  # nothing to validate with
    assert loose.run("anything", "4", 5, x="1.5").wait() == ["anything", [4, 5], {"x": 1.5}]
    with pytest.raises(KitaruUsageError, match=r"'rest' expects int, got 'four'"):
        loose.run(None, "four")


def test_a_flow_cannot_be_called_directly_whatever_its_arguments() -> None:
    # The only way in is .run(): a direct call never runs the body unvalidated.
    with pytest.raises(KitaruUsageError, match=r"typed\.run\(\.\.\.\)"):
        typed("abc", {"topic": "t"})  # type: ignore[arg-type]


@checkpoint
def double(n: int) -> int:
    return n * 2


@flow
def doubler(n: int) -> int:
    return double(n)


def test_replay_flow_overrides_use_the_same_validation(any_store: str) -> None:
    handle = doubler.run("2")
    assert handle.wait() == 4
    client = KitaruClient()
    with pytest.raises(KitaruUsageError, match=r"flow_overrides\['n'\].*expects int.*'abc'"):
        client.executions.replay(handle.exec_id, at="double", flow_overrides={"n": "abc"})
    submission = client.executions.replay(handle.exec_id, at="double", flow_overrides={"n": "5"})
    replay_id = submission.results[0].replay_exec_id
    assert client.executions.get(replay_id).exec_id == replay_id
    from kitaru.handle import FlowHandle

    assert FlowHandle(replay_id).wait() == 10
