"""@checkpoint: context rules, options, call ids, retries, memoisation, cache, divergence."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from kitaru import (
    ExecutionStatus,
    FailureOrigin,
    FlowHandle,
    KitaruBackendError,
    KitaruContextError,
    KitaruDivergenceError,
    KitaruExecutionError,
    KitaruStateError,
    KitaruTimeoutError,
    KitaruUsageError,
    KitaruUserCodeError,
    checkpoint,
    flow,
)
from kitaru._backend import get_backend
from kitaru._store import CallStatus


def calls_of(exec_id: str) -> list[tuple[str, str, str]]:
    return [(c.call_id, c.name, c.status.value) for c in get_backend().store.calls(exec_id)]


# -- context rules ---------------------------------------------------------------------


@checkpoint
def plain(x: int) -> int:
    return x + 1


def test_checkpoint_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError, match="'plain' was called outside a running flow"):
        plain(1)


def test_nested_checkpoint_is_a_context_error() -> None:
    @checkpoint
    def outer() -> int:
        return plain(1)

    @flow
    def nests() -> int:
        return outer()

    with pytest.raises(KitaruUserCodeError) as info:
        nests.run().wait()
    assert info.value.exception_type == "kitaru.errors.KitaruContextError"
    assert "inside checkpoint 'outer'" in (info.value.exception_message or "")


# -- options ---------------------------------------------------------------------------


def test_bare_and_configured_forms_keep_the_function() -> None:
    @checkpoint(retries=2, type="llm_call", runtime="ISOLATED", cache=False)
    def configured(a: int) -> int:
        """Doc."""
        return a

    assert configured.__name__ == "configured"
    assert configured.__doc__ == "Doc."
    assert (configured.retries, configured.type, configured.runtime, configured.cache) == (
        2,
        "llm_call",
        "isolated",
        False,
    )


@pytest.mark.parametrize("runtime", ["remote", "", 3])
def test_unknown_runtime_is_a_usage_error(runtime: Any) -> None:
    with pytest.raises(KitaruUsageError, match="runtime="):
        checkpoint(runtime=runtime)(lambda: None)


@pytest.mark.parametrize("retries", [-1, 0.5, None.__class__])
def test_invalid_retries_are_a_usage_error(retries: Any) -> None:
    with pytest.raises(KitaruUsageError, match="retries"):
        checkpoint(retries=retries)(lambda: None)


def test_type_and_runtime_are_stored_with_the_call(any_store: str) -> None:
    @checkpoint(type="tool_call", runtime="Inline")
    def tool() -> str:
        return "ok"

    @flow
    def uses_tool() -> str:
        return tool()

    handle = uses_tool.run()
    handle.wait()
    (call,) = get_backend().store.calls(handle.exec_id)
    assert (call.type, call.runtime) == ("tool_call", "inline")


# -- call ids --------------------------------------------------------------------------


def test_call_ids_count_per_name_and_respect_explicit_ids(any_store: str) -> None:
    @flow(cache=False)
    def repeated() -> list[int]:
        return [plain(1), plain(2), plain(3, id="third"), plain(4)]

    handle = repeated.run()
    assert handle.wait() == [2, 3, 4, 5]
    assert calls_of(handle.exec_id) == [
        ("plain", "plain", "completed"),
        ("plain:2", "plain", "completed"),
        ("third", "plain", "completed"),
        ("plain:3", "plain", "completed"),
    ]


def test_duplicate_explicit_id_is_a_usage_error() -> None:
    @flow
    def dup() -> None:
        plain(1, id="x")
        plain(2, id="x")

    with pytest.raises(KitaruUserCodeError) as info:
        dup.run().wait()
    assert "'x' is used twice" in (info.value.exception_message or "")


@pytest.mark.parametrize(
    ("bad_id", "named"),
    [("step-\udc80", "not valid Unicode"), ("x" * 513, "at most 512"), ("a\x00b", "NUL character")],
)
def test_an_id_the_store_cannot_hold_is_a_usage_error_at_the_call(
    any_store: str, bad_id: str, named: str
) -> None:
    @flow
    def odd_id() -> int:
        return plain(1, id=bad_id)

    with pytest.raises(KitaruUserCodeError) as info:
        odd_id.run().wait()
    assert info.value.exception_type == "kitaru.errors.KitaruUsageError"
    assert named in (info.value.exception_message or "")
    assert calls_of(info.value.exec_id or "") == []  # refused before anything ran


# -- failures and retries --------------------------------------------------------------


def test_failure_carries_everything_a_caller_needs(any_store: str) -> None:
    @checkpoint
    def explode(x: int) -> int:
        raise ValueError(f"bad input {x}")

    @flow
    def fails() -> int:
        plain(1)
        return explode(7)

    handle = fails.run()
    with pytest.raises(KitaruUserCodeError) as info:
        handle.wait()
    error = info.value
    assert isinstance(error, KitaruExecutionError)
    assert error.exec_id == handle.exec_id
    assert error.status == "failed"
    assert error.failure_origin is FailureOrigin.USER_CODE
    assert error.checkpoint == "explode"
    assert error.exception_type == "ValueError"
    assert error.exception_message == "bad input 7"
    assert f"kitaru executions retry {handle.exec_id}" in str(error)
    assert "ValueError: bad input 7" in str(error)
    assert handle.status is ExecutionStatus.FAILED
    # get() raises the same typed error.
    with pytest.raises(KitaruUserCodeError):
        handle.get()
    assert calls_of(handle.exec_id) == [
        ("plain", "plain", "completed"),
        ("explode", "explode", "failed"),
    ]


def test_checkpoint_retries_record_every_attempt(any_store: str) -> None:
    attempts: Counter[str] = Counter()

    @checkpoint(retries=3)
    def flaky() -> str:
        attempts["flaky"] += 1
        if attempts["flaky"] < 3:
            raise ConnectionError(f"try {attempts['flaky']}")
        return "finally"

    @flow
    def retrying() -> str:
        return flaky()

    handle = retrying.run()
    assert handle.wait() == "finally"
    assert attempts["flaky"] == 3
    recorded = get_backend().store.attempts(handle.exec_id)
    assert [(a.attempt, a.status, a.exception_type, a.message) for a in recorded] == [
        (1, "failed", "ConnectionError", "try 1"),
        (2, "failed", "ConnectionError", "try 2"),
        (3, "completed", None, None),
    ]
    assert all(a.ended_at is not None and a.ended_at >= a.started_at for a in recorded)
    assert "ConnectionError: try 1" in (recorded[0].traceback or "")
    (call,) = get_backend().store.calls(handle.exec_id)
    assert (call.status, call.attempts) == (CallStatus.COMPLETED, 3)


def test_exhausted_retries_fail_with_all_attempts_recorded() -> None:
    @checkpoint(retries=1)
    def always() -> None:
        raise RuntimeError("nope")

    @flow
    def doomed() -> None:
        always()

    handle = doomed.run()
    with pytest.raises(KitaruUserCodeError, match="nope"):
        handle.wait()
    assert [a.status for a in get_backend().store.attempts(handle.exec_id)] == ["failed"] * 2


def test_body_can_catch_a_checkpoint_failure() -> None:
    @checkpoint
    def risky() -> int:
        raise KeyError("k")

    @flow
    def careful() -> str:
        try:
            risky()
        except KeyError:
            return "recovered"
        return "unreachable"

    assert careful.run().wait() == "recovered"


def test_flow_retries_reuse_completed_checkpoints(any_store: str) -> None:
    runs: Counter[str] = Counter()

    @checkpoint
    def expensive(step: int) -> int:
        runs[f"expensive{step}"] += 1
        return step * 10

    @checkpoint
    def unstable() -> int:
        runs["unstable"] += 1
        if runs["unstable"] == 1:
            raise TimeoutError("model timed out")
        return 5

    @flow(retries=2)
    def agent() -> int:
        return expensive(1) + expensive(2) + unstable() + expensive(3)

    handle = agent.run()
    assert handle.wait() == 65
    assert runs == Counter(expensive1=1, expensive2=1, unstable=2, expensive3=1)
    record = get_backend().store.require_execution(handle.exec_id)
    assert record.run_count == 2
    assert [
        a.run for a in get_backend().store.attempts(handle.exec_id) if a.call_id == "unstable"
    ] == [
        1,
        2,
    ]


def test_divergence_on_rerun_is_detected_and_not_retried(any_store: str) -> None:
    runs: Counter[str] = Counter()

    @checkpoint
    def first() -> int:
        return 1

    @checkpoint
    def second() -> int:
        return 2

    @checkpoint
    def boom() -> int:
        raise RuntimeError("fail once")

    @checkpoint
    def other() -> int:
        return 3

    @flow(retries=3)
    def shifting() -> int:
        runs["body"] += 1
        if runs["body"] == 1:
            return first() + second() + boom()
        # The second run skips the recorded `first` and goes live with something new.
        return second() + other() + first()

    handle = shifting.run()
    with pytest.raises(KitaruDivergenceError) as info:
        handle.wait()
    assert runs["body"] == 2
    message = str(info.value)
    assert info.value.failure_origin is FailureOrigin.DIVERGENCE
    assert "recorded: first (first), second (second), boom (boom)" in message
    assert "now:      second (second), other (other)" in message
    assert "'first'" in message


def test_unserializable_output_fails_with_a_clear_error_and_stores_nothing(
    any_store: str,
) -> None:
    @checkpoint
    def makes_lock() -> Any:
        return threading.Lock()

    @flow
    def locky() -> None:
        makes_lock()

    handle = locky.run()
    with pytest.raises(KitaruUserCodeError) as info:
        handle.wait()
    assert info.value.checkpoint == "makes_lock"
    assert "lock" in (info.value.exception_message or "").lower()
    assert "makes_lock" in (info.value.exception_message or "")
    (call,) = get_backend().store.calls(handle.exec_id)
    assert call.status is CallStatus.FAILED
    assert call.artifact_id is None
    assert [a.kind for a in get_backend().store.list_artifacts(exec_id=handle.exec_id)] == [
        "flow_inputs"
    ]


# -- cache -----------------------------------------------------------------------------


def test_cross_run_cache_reuses_outputs_without_running(any_store: str) -> None:
    runs: Counter[str] = Counter()

    @checkpoint
    def llm(prompt: str) -> str:
        runs[prompt] += 1
        return prompt[::-1]

    @flow
    def chat(prompt: str) -> str:
        return llm(prompt)

    first = chat.run(prompt="hello")
    assert first.wait() == "olleh"
    second = chat.run(prompt="hello")
    assert second.wait() == "olleh"
    third = chat.run(prompt="other")
    assert third.wait() == "rehto"
    assert runs == Counter(hello=1, other=1)
    (cached,) = get_backend().store.calls(second.exec_id)
    assert cached.status is CallStatus.CACHED
    assert cached.source_exec_id == first.exec_id


def test_cache_false_at_checkpoint_or_execution_level_runs_live() -> None:
    runs: Counter[str] = Counter()

    @checkpoint(cache=False)
    def uncached() -> int:
        runs["uncached"] += 1
        return 1

    @checkpoint
    def cached() -> int:
        runs["cached"] += 1
        return 2

    @flow
    def both() -> int:
        return uncached() + cached()

    for _ in range(2):
        both.run().wait()
    assert runs == Counter(uncached=2, cached=1)
    both.run(cache=False).wait()
    assert runs == Counter(uncached=3, cached=2)


def test_execution_level_cache_overrides_checkpoint_level() -> None:
    runs: Counter[str] = Counter()

    @checkpoint(cache=False)
    def step() -> int:
        runs["step"] += 1
        return 1

    @flow(cache=True)
    def forced() -> int:
        return step()

    forced.run().wait()
    forced.run().wait()
    assert runs["step"] == 1


def test_changing_the_code_invalidates_the_cache() -> None:
    runs: Counter[str] = Counter()

    def make(version: int) -> Any:
        if version == 1:

            @checkpoint
            def compute() -> int:
                runs["v1"] += 1
                return 1

        else:

            @checkpoint
            def compute() -> int:
                runs["v2"] += 1
                return 2

        @flow
        def versioned() -> int:
            return compute()

        return versioned

    assert make(1).run().wait() == 1
    assert make(2).run().wait() == 2
    assert runs == Counter(v1=1, v2=1)


# -- handle ----------------------------------------------------------------------------


def test_wait_timeout_leaves_the_execution_running() -> None:
    release = threading.Event()

    @checkpoint
    def gate() -> str:
        release.wait(10)
        return "open"

    @flow
    def gated() -> str:
        return gate()

    handle = gated.run()
    with pytest.raises(KitaruTimeoutError, match=handle.exec_id):
        handle.wait(timeout=0.05)
    with pytest.raises(KitaruStateError, match="still running"):
        handle.get()
    assert handle.status is ExecutionStatus.RUNNING
    release.set()
    assert handle.wait(timeout=10) == "open"
    assert handle.get() == "open"


def test_handle_for_unknown_execution_is_a_backend_error() -> None:
    with pytest.raises(KitaruBackendError, match="Failed to load execution 'nope'"):
        FlowHandle("nope").status  # noqa: B018
    with pytest.raises(KitaruBackendError, match="Failed to load execution 'nope'"):
        FlowHandle("nope").wait()


def test_corrupted_output_is_a_backend_error_not_a_wrong_value(any_store: str) -> None:
    @flow
    def simple() -> int:
        return plain(41)

    handle = simple.run()
    assert handle.wait() == 42
    store = get_backend().store
    record = store.require_execution(handle.exec_id)
    import sqlalchemy as sa

    from kitaru._store import schema

    with store.write() as conn:
        conn.execute(
            schema.artifacts.update()
            .where(schema.artifacts.c.id == record.result_artifact_id)
            .values(inline_data=b"43")
        )
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.artifacts)).scalar()
    with pytest.raises(KitaruBackendError, match="corrupted"):
        FlowHandle(handle.exec_id).get()


def test_large_outputs_go_to_the_blob_store(any_store: str) -> None:
    big = "x" * 200_000

    @checkpoint
    def large() -> str:
        return big

    @flow
    def produces() -> int:
        return len(large())

    handle = produces.run()
    assert handle.wait() == 200_000
    (call,) = get_backend().store.calls(handle.exec_id)
    assert call.artifact is not None
    assert call.artifact.inline_data is None
    assert call.artifact.uri is not None
    assert get_backend().load_value(call.artifact) == big
