"""OpenTelemetry spans for executions and checkpoint calls (in-memory exporter).

A process has one global tracer provider and it can be set only once, so the
exporter is installed once per test process (module fixture, guarded) and each
test picks its spans by execution id.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import kitaru
from kitaru import KitaruClient, KitaruUserCodeError, checkpoint, flow
from tests.observe.conftest import child_env, run_child

_exporter: InMemorySpanExporter | None = None


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    global _exporter
    if _exporter is None:
        _exporter = InMemorySpanExporter()
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):  # someone set one already: add to it
            current.add_span_processor(SimpleSpanProcessor(_exporter))
        else:
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(_exporter))
            trace.set_tracer_provider(provider)
    return _exporter


def spans_of(exporter: InMemorySpanExporter, exec_id: str) -> list[ReadableSpan]:
    return [
        span
        for span in exporter.get_finished_spans()
        if (span.attributes or {}).get("kitaru.exec_id") == exec_id
    ]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def only(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


# --- flows ----------------------------------------------------------------------------------


@checkpoint
def fetch(x: int) -> int:
    return x + 1


@checkpoint(type="llm")
def think(x: int) -> int:
    return x * 2


@flow
def traced(x: int) -> int:
    return think(fetch(x))


def test_execution_and_checkpoint_spans_with_attributes_and_parents(
    exporter: InMemorySpanExporter,
) -> None:
    handle = traced.run(1)
    assert handle.wait(timeout=30) == 4
    spans = spans_of(exporter, handle.exec_id)
    assert sorted(s.name for s in spans) == [
        "kitaru.checkpoint fetch",
        "kitaru.checkpoint think",
        "kitaru.execution traced",
    ]
    (root,) = only(spans, "kitaru.execution traced")
    assert root.parent is None
    assert attrs(root) == {
        "kitaru.exec_id": handle.exec_id,
        "kitaru.flow": "traced",
        "kitaru.run": 1,
        "kitaru.stack": "local",
        "kitaru.status": "completed",
    }
    for name in ("fetch", "think"):
        (span,) = only(spans, f"kitaru.checkpoint {name}")
        assert span.parent is not None
        assert span.parent.span_id == root.context.span_id
        assert span.context.trace_id == root.context.trace_id
        assert attrs(span) == {
            "kitaru.exec_id": handle.exec_id,
            "kitaru.flow": "traced",
            "kitaru.checkpoint": name,
            "kitaru.call_id": name,
            "kitaru.run": 1,
            "kitaru.status": "completed",
            "kitaru.attempt": 1,
        }
        assert span.status.status_code is StatusCode.UNSET
    # Children end before their parent, in call order.
    fetch_span, think_span = (
        only(spans, "kitaru.checkpoint fetch")[0],
        only(spans, "kitaru.checkpoint think")[0],
    )
    assert fetch_span.end_time is not None
    assert think_span.start_time is not None
    assert fetch_span.end_time <= think_span.start_time
    assert root.end_time is not None
    assert think_span.end_time is not None
    assert think_span.end_time <= root.end_time


@checkpoint
async def fetch_async(x: int) -> int:
    return x + 1


@flow(cache=False)
async def traced_async(x: int) -> list[int]:
    import asyncio

    return list(await asyncio.gather(fetch_async(x), fetch_async(x + 1)))


def test_async_checkpoint_calls_have_spans_under_the_execution(
    exporter: InMemorySpanExporter,
) -> None:
    handle = traced_async.run(1)
    assert handle.wait(timeout=30) == [2, 3]
    spans = spans_of(exporter, handle.exec_id)
    (root,) = only(spans, "kitaru.execution traced_async")
    calls = only(spans, "kitaru.checkpoint fetch_async")
    assert sorted(attrs(s)["kitaru.call_id"] for s in calls) == ["fetch_async", "fetch_async:2"]
    for span in calls:
        assert span.parent is not None
        assert span.parent.span_id == root.context.span_id
        assert attrs(span)["kitaru.status"] == "completed"


def test_a_cache_hit_is_a_cached_span(exporter: InMemorySpanExporter) -> None:
    traced.run(10).wait(timeout=30)
    again = traced.run(10)
    again.wait(timeout=30)
    spans = spans_of(exporter, again.exec_id)
    statuses = {
        attrs(s)["kitaru.checkpoint"]: (attrs(s)["kitaru.status"], attrs(s)["kitaru.attempt"])
        for s in spans
        if s.name.startswith("kitaru.checkpoint")
    }
    assert statuses == {"fetch": ("cached", 0), "think": ("cached", 0)}


_runs: list[int] = []


@flow(retries=1)
def fails_once_after_fetch(x: int) -> int:
    _runs.append(1)
    value = fetch(x)
    if len(_runs) == 1:
        raise RuntimeError("first run fails")
    return think(value)


def test_a_rerun_body_shows_memoized_calls_and_one_span_per_run(
    exporter: InMemorySpanExporter,
) -> None:
    _runs.clear()
    handle = fails_once_after_fetch.run(20)
    assert handle.wait(timeout=30) == 42
    spans = spans_of(exporter, handle.exec_id)
    runs = sorted(
        only(spans, "kitaru.execution fails_once_after_fetch"), key=lambda s: attrs(s)["kitaru.run"]
    )
    assert [(attrs(s)["kitaru.run"], attrs(s)["kitaru.status"]) for s in runs] == [
        (1, "failed"),
        (2, "completed"),
    ]
    fetches = only(spans, "kitaru.checkpoint fetch")
    by_run = {attrs(s)["kitaru.run"]: attrs(s) for s in fetches}
    assert by_run[1]["kitaru.status"] == "completed"
    assert by_run[2]["kitaru.status"] == "memoized"
    assert by_run[2]["kitaru.recorded_status"] == "completed"
    for span in fetches:  # each checkpoint span sits under the run that made the call
        parent = next(r for r in runs if r.context.span_id == span.parent.span_id)  # type: ignore[union-attr]
        assert attrs(parent)["kitaru.run"] == attrs(span)["kitaru.run"]
    (think_span,) = only(spans, "kitaru.checkpoint think")
    assert attrs(think_span)["kitaru.run"] == 2


_attempts: list[int] = []


@checkpoint(retries=1)
def always_broken(x: int) -> int:
    _attempts.append(1)
    raise ValueError(f"broken {x}")


@flow
def broken(x: int) -> int:
    return always_broken(x)


def test_a_failed_checkpoint_span_records_status_attempts_and_error(
    exporter: InMemorySpanExporter,
) -> None:
    handle = broken.run(3)
    with pytest.raises(KitaruUserCodeError):
        handle.wait(timeout=30)
    spans = spans_of(exporter, handle.exec_id)
    (span,) = only(spans, "kitaru.checkpoint always_broken")
    assert attrs(span)["kitaru.status"] == "failed"
    assert attrs(span)["kitaru.attempt"] == 2
    assert span.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in span.events)
    (root,) = only(spans, "kitaru.execution broken")
    assert attrs(root)["kitaru.status"] == "failed"


@checkpoint
def research(topic: str) -> str:
    return f"notes on {topic}"


@checkpoint
def draft(notes: str) -> str:
    return f"draft({notes})"


@flow
def writer(topic: str) -> str:
    return draft(research(topic))


def test_a_replay_shows_reused_calls(exporter: InMemorySpanExporter) -> None:
    source = writer.run("otel")
    source.wait(timeout=30)
    submission = KitaruClient().executions.replay(
        source.exec_id, at="draft", checkpoint_overrides={"draft": {"output": "edited"}}
    )
    replayed = KitaruClient().executions.get(submission.results[0].replay_exec_id)
    assert replayed.status.value == "completed"
    spans = spans_of(exporter, replayed.exec_id)
    by_name = {
        attrs(s)["kitaru.checkpoint"]: attrs(s) for s in spans if "kitaru.checkpoint" in attrs(s)
    }
    assert by_name["research"]["kitaru.status"] == "memoized"
    assert by_name["research"]["kitaru.recorded_status"] == "reused"
    assert by_name["draft"]["kitaru.status"] == "reused"


@flow
def saves_in_body(x: int) -> int:
    kitaru.save("plan", x)
    return fetch(x)


def test_a_body_save_does_not_annotate_the_execution_span(
    exporter: InMemorySpanExporter,
) -> None:
    handle = saves_in_body.run(1)
    handle.wait(timeout=30)
    (root,) = only(spans_of(exporter, handle.exec_id), "kitaru.execution saves_in_body")
    assert "kitaru.attempt" not in attrs(root)


# --- without OpenTelemetry --------------------------------------------------------------------

NO_OTEL = textwrap.dedent(
    """
    import sys
    sys.modules["opentelemetry"] = None  # import opentelemetry -> ImportError
    import kitaru
    from kitaru import KitaruClient
    from kitaru._runtime import tracing
    from tests.observe._obs_flows import simple

    handle = simple.run(2)
    print("result", handle.wait(timeout=30))
    execution = KitaruClient().executions.get(handle.exec_id)
    print("status", execution.status.value)
    print("calls", [c.status.value for c in execution.checkpoints])
    print("otel loaded", tracing._trace is not None)
    print("otel modules", sorted(m for m in sys.modules if m.startswith("opentelemetry.")))
    """
)


def test_without_opentelemetry_flows_run_unchanged(any_store: str, state_dir: Path) -> None:
    child = run_child(["-c", NO_OTEL], env=child_env(state_dir))
    assert child.returncode == 0, child.stderr
    assert child.stdout.splitlines() == [
        "result 7",
        "status completed",
        "calls ['completed', 'completed']",
        "otel loaded False",
        "otel modules []",
    ]
    assert child.stderr == ""
