"""Kitaru 0.21's error contract (KITARU_CONTRACT.md §1): the class tree with its builtin
bases, the constructors, the failure helpers, and which operation raises what.

Code written for 0.21 catches errors by these classes (``except KitaruRuntimeError``,
``except ValueError``, ``except LookupError``...), so each row of the contract's table
is checked against the real runtime, on SQLite and PostgreSQL where a store is involved.
"""

from __future__ import annotations

import math
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import kitaru
import kitaru.errors as errors_module
from kitaru import (
    ExecutionStatus,
    FailureOrigin,
    KitaruAmbiguousFlowResultError,
    KitaruBackendError,
    KitaruClient,
    KitaruContextError,
    KitaruDivergenceError,
    KitaruError,
    KitaruExecutionError,
    KitaruFeatureNotAvailableError,
    KitaruLogRetrievalError,
    KitaruRuntimeError,
    KitaruStackIntegrationDependencyError,
    KitaruStateError,
    KitaruTimeoutError,
    KitaruUsageError,
    KitaruUserCodeError,
    KitaruWaitAbortedError,
    KitaruWaitValidationError,
    checkpoint,
    flow,
)
from kitaru.errors import (
    KitaruDeploymentInputValuesError,
    KitaruStackNotRemoteExecutableStateError,
    KitaruStackNotRemoteExecutableUsageError,
    StackNotRemoteExecutable,
    build_recovery_command,
    classify_failure_origin,
    execution_error_from_failure,
    format_recovery_hint,
    traceback_exception_type,
    traceback_last_line,
)

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def _eventually(check: Callable[[], bool], *, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def _status(exec_id: str) -> ExecutionStatus:
    return KitaruClient().executions.get(exec_id).status


# --- the tree -------------------------------------------------------------------------

# Every class with all the ancestors 0.21 gives it (Kitaru classes and builtins).
TREE: dict[type[BaseException], tuple[type, ...]] = {
    KitaruError: (Exception,),
    KitaruUsageError: (KitaruError, ValueError),
    KitaruWaitValidationError: (KitaruUsageError, KitaruError, ValueError),
    KitaruStackIntegrationDependencyError: (KitaruUsageError, KitaruError, ValueError),
    KitaruContextError: (KitaruError, RuntimeError),
    KitaruStateError: (KitaruError, RuntimeError),
    KitaruTimeoutError: (KitaruStateError, KitaruError, RuntimeError, TimeoutError),
    KitaruRuntimeError: (KitaruError, RuntimeError),
    KitaruAmbiguousFlowResultError: (KitaruRuntimeError, KitaruError, RuntimeError),
    KitaruExecutionError: (KitaruRuntimeError, KitaruError, RuntimeError),
    KitaruUserCodeError: (KitaruExecutionError, KitaruRuntimeError, KitaruError, RuntimeError),
    KitaruDivergenceError: (KitaruExecutionError, KitaruRuntimeError, KitaruError, RuntimeError),
    KitaruBackendError: (KitaruRuntimeError, KitaruError, RuntimeError),
    KitaruLogRetrievalError: (KitaruBackendError, KitaruRuntimeError, KitaruError, RuntimeError),
    KitaruFeatureNotAvailableError: (KitaruError, NotImplementedError),
    KitaruDeploymentInputValuesError: (KitaruUsageError, KitaruError, ValueError),
    KitaruStackNotRemoteExecutableUsageError: (StackNotRemoteExecutable, KitaruUsageError),
    KitaruStackNotRemoteExecutableStateError: (StackNotRemoteExecutable, KitaruStateError),
    # Ours, not in 0.21: an error a flow body may catch, deliberately outside the families.
    KitaruWaitAbortedError: (KitaruError,),
}

# The families 0.21 keeps apart: a class in one must not be caught as another.
FAMILIES = (
    KitaruUsageError,
    KitaruContextError,
    KitaruStateError,
    KitaruRuntimeError,
    KitaruFeatureNotAvailableError,
)


@pytest.mark.parametrize("cls", list(TREE), ids=lambda c: c.__name__)
def test_each_class_has_0_21s_ancestors_and_no_other_family(cls: type[BaseException]) -> None:
    for ancestor in TREE[cls]:
        assert issubclass(cls, ancestor), f"{cls.__name__} is not a {ancestor.__name__}"
    own = [family for family in FAMILIES if issubclass(cls, family)]
    assert len(own) <= 1, f"{cls.__name__} is in several families: {own}"


@pytest.mark.parametrize(
    ("cls", "not_a"),
    [
        (KitaruUsageError, RuntimeError),
        (KitaruStateError, KitaruRuntimeError),
        (KitaruTimeoutError, KitaruRuntimeError),
        (KitaruContextError, KitaruStateError),
        (KitaruBackendError, KitaruStateError),
        (KitaruExecutionError, KitaruStateError),
        (KitaruWaitValidationError, KitaruStateError),
        (KitaruWaitAbortedError, KitaruExecutionError),
        (KitaruFeatureNotAvailableError, KitaruRuntimeError),
    ],
    ids=lambda c: c.__name__,
)
def test_classes_are_not_caught_as_another_branch(
    cls: type[BaseException], not_a: type[BaseException]
) -> None:
    assert not issubclass(cls, not_a)


def test_the_stack_dependency_error_is_also_an_import_error() -> None:
    # 0.21 puts it under KitaruUsageError; being an ImportError too is our superset.
    error = KitaruStackIntegrationDependencyError("install kitaru[ray]")
    assert isinstance(error, ImportError)
    assert isinstance(error, KitaruUsageError)
    assert str(error) == "install kitaru[ray]"


def test_every_error_is_exported_from_kitaru_and_kitaru_errors() -> None:
    public_in_kitaru = {cls for cls in TREE if not issubclass(cls, StackNotRemoteExecutable)} - {
        KitaruDeploymentInputValuesError
    }
    for cls in public_in_kitaru:
        assert getattr(kitaru, cls.__name__) is cls
        assert cls.__name__ in kitaru.__all__
    for cls in TREE:
        assert getattr(errors_module, cls.__name__) is cls
        assert cls.__name__ in errors_module.__all__
    for helper in (
        "FailureOrigin",
        "build_recovery_command",
        "classify_failure_origin",
        "execution_error_from_failure",
        "format_recovery_hint",
        "traceback_exception_type",
        "traceback_last_line",
    ):
        assert helper in errors_module.__all__
    assert kitaru.FailureOrigin is FailureOrigin


def test_failure_origin_values() -> None:
    assert {o.name: o.value for o in FailureOrigin} == {
        "USER_CODE": "user_code",
        "RUNTIME": "runtime",
        "BACKEND": "backend",
        "DIVERGENCE": "divergence",
        "UNKNOWN": "unknown",
    }
    assert FailureOrigin("user_code") == "user_code"  # a StrEnum


# --- constructors ----------------------------------------------------------------------

EXECUTION_ERRORS = [KitaruExecutionError, KitaruUserCodeError, KitaruDivergenceError]


@pytest.mark.parametrize("cls", EXECUTION_ERRORS, ids=lambda c: c.__name__)
def test_execution_error_with_a_message_only(cls: type[KitaruExecutionError]) -> None:
    error = cls("it broke")
    assert str(error) == "it broke"
    assert (error.exec_id, error.status, error.failure_origin) == (None, None, None)


@pytest.mark.parametrize("cls", EXECUTION_ERRORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("failed", ExecutionStatus.FAILED),
        ("FAILED", ExecutionStatus.FAILED),
        (" Cancelled ", ExecutionStatus.CANCELLED),
        (ExecutionStatus.COMPLETED, ExecutionStatus.COMPLETED),
    ],
)
def test_execution_error_fields_and_status_coercion(
    cls: type[KitaruExecutionError], given: Any, expected: ExecutionStatus
) -> None:
    error = cls("it broke", exec_id="e-1", status=given, failure_origin=FailureOrigin.USER_CODE)
    assert error.exec_id == "e-1"
    assert error.status is expected
    assert error.failure_origin is FailureOrigin.USER_CODE


@pytest.mark.parametrize("cls", EXECUTION_ERRORS, ids=lambda c: c.__name__)
def test_execution_error_with_an_unknown_status_is_a_usage_error(
    cls: type[KitaruExecutionError],
) -> None:
    with pytest.raises(KitaruUsageError, match="'exploded'") as info:
        cls("it broke", status="exploded")
    assert "failed" in str(info.value)  # the message lists the valid statuses


def test_execution_error_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        KitaruExecutionError("it broke", "e-1")  # type: ignore[call-arg]


def test_execution_errors_survive_pickling() -> None:
    # Isolated checkpoints send exceptions across processes by pickle.
    error = KitaruUserCodeError(
        "it broke", exec_id="e-1", status="failed", failure_origin=FailureOrigin.USER_CODE
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is KitaruUserCodeError
    assert (str(copy), copy.exec_id, copy.status, copy.failure_origin) == (
        "it broke",
        "e-1",
        ExecutionStatus.FAILED,
        FailureOrigin.USER_CODE,
    )


def test_timeout_error_fields_and_default_message() -> None:
    error = KitaruTimeoutError(
        exec_id="e-1", timeout_seconds=2.5, elapsed_seconds=2.51, last_status="Waiting"
    )
    assert (error.exec_id, error.timeout_seconds, error.elapsed_seconds) == ("e-1", 2.5, 2.51)
    assert error.last_status is ExecutionStatus.WAITING
    message = str(error)
    assert "e-1" in message
    assert "2.5" in message
    assert "waiting" in message
    assert "kitaru executions get e-1" in message  # what to do next
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.exec_id, copy.timeout_seconds, copy.last_status, str(copy)) == (
        "e-1",
        2.5,
        ExecutionStatus.WAITING,
        message,
    )


def test_timeout_error_is_keyword_only_with_every_field() -> None:
    with pytest.raises(TypeError):
        KitaruTimeoutError("took too long")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        KitaruTimeoutError(exec_id="e-1", timeout_seconds=1.0)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "cls",
    [
        KitaruError,
        KitaruUsageError,
        KitaruWaitValidationError,
        KitaruStackIntegrationDependencyError,
        KitaruContextError,
        KitaruStateError,
        KitaruRuntimeError,
        KitaruAmbiguousFlowResultError,
        KitaruBackendError,
        KitaruLogRetrievalError,
        KitaruFeatureNotAvailableError,
        KitaruDeploymentInputValuesError,
        KitaruStackNotRemoteExecutableUsageError,
        KitaruStackNotRemoteExecutableStateError,
    ],
    ids=lambda c: c.__name__,
)
def test_other_errors_take_a_message(cls: type[BaseException]) -> None:
    error = cls("what happened")
    assert str(error) == "what happened"
    assert error.args == ("what happened",)


# --- failure helpers -------------------------------------------------------------------

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "agent.py", line 3, in research\n'
    "    raise ValueError('no sources')\n"
    "ValueError: no sources\n\n"
)


def test_traceback_last_line_and_exception_type() -> None:
    assert traceback_last_line(TRACEBACK) == "ValueError: no sources"
    assert traceback_exception_type(TRACEBACK) == "ValueError"
    dotted = "Traceback ...\nkitaru.errors.KitaruBackendError: store down"
    assert traceback_exception_type(dotted) == "kitaru.errors.KitaruBackendError"
    assert traceback_exception_type("Traceback ...\nKeyboardInterrupt") == "KeyboardInterrupt"
    assert traceback_exception_type("Traceback ...\n    x = 1 + ") is None
    for nothing in (None, "", "  \n \n"):
        assert traceback_last_line(nothing) is None
        assert traceback_exception_type(nothing) is None


def test_classify_failure_origin_from_exceptions() -> None:
    divergence = KitaruDivergenceError("diverged", failure_origin=FailureOrigin.DIVERGENCE)
    assert classify_failure_origin(divergence) is FailureOrigin.DIVERGENCE
    assert classify_failure_origin(KitaruBackendError("disk full")) is FailureOrigin.BACKEND
    assert classify_failure_origin(KitaruRuntimeError("bug")) is FailureOrigin.RUNTIME
    assert classify_failure_origin(ValueError("bad input")) is FailureOrigin.UNKNOWN
    assert (
        classify_failure_origin(ValueError("bad input"), default=FailureOrigin.USER_CODE)
        is FailureOrigin.USER_CODE
    )


def test_classify_failure_origin_from_a_recorded_failure_or_text() -> None:
    assert classify_failure_origin({"origin": "user_code"}) is FailureOrigin.USER_CODE
    assert classify_failure_origin({"message": "execution diverged"}) is FailureOrigin.DIVERGENCE
    assert classify_failure_origin({}) is FailureOrigin.UNKNOWN
    # 0.21's keyword form: conservative hints in the status reason and the traceback.
    assert (
        classify_failure_origin(status_reason="Replay mismatch at step 3", traceback=None)
        is FailureOrigin.DIVERGENCE
    )
    assert (
        classify_failure_origin(status_reason=None, traceback="... could not serialize x")
        is FailureOrigin.RUNTIME
    )
    assert (
        classify_failure_origin(status_reason="Connection refused", traceback=None)
        is FailureOrigin.BACKEND
    )
    assert classify_failure_origin(status_reason=None, traceback=TRACEBACK) is (
        FailureOrigin.UNKNOWN
    )


def test_recovery_command_and_hint() -> None:
    for failed in ("failed", "FAILED", ExecutionStatus.FAILED):
        assert build_recovery_command("e-1", status=failed) == "kitaru executions retry e-1"
        hint = format_recovery_hint("e-1", status=failed)
        assert hint is not None
        assert hint.rstrip().endswith("kitaru executions retry e-1")
    for other in ("completed", "cancelled", "running", ExecutionStatus.WAITING):
        assert build_recovery_command("e-1", status=other) is None
        assert format_recovery_hint("e-1", status=other) is None


@pytest.mark.parametrize(
    ("origin", "cls"),
    [
        (FailureOrigin.DIVERGENCE, KitaruDivergenceError),
        (FailureOrigin.USER_CODE, KitaruUserCodeError),
        (FailureOrigin.RUNTIME, KitaruExecutionError),
        (FailureOrigin.BACKEND, KitaruExecutionError),
        (FailureOrigin.UNKNOWN, KitaruExecutionError),
    ],
)
def test_execution_error_from_failure_picks_the_class_by_origin(
    origin: FailureOrigin, cls: type[KitaruExecutionError]
) -> None:
    error = execution_error_from_failure("it broke", exec_id="e-1", status="failed", origin=origin)
    assert type(error) is cls
    assert (str(error), error.exec_id, error.status, error.failure_origin) == (
        "it broke",
        "e-1",
        ExecutionStatus.FAILED,
        origin,
    )


def test_execution_error_from_a_recorded_failure() -> None:
    failure = {
        "origin": "user_code",
        "checkpoint": "research",
        "exception_type": "ValueError",
        "message": "no sources",
        "traceback": TRACEBACK,
    }
    error = execution_error_from_failure(
        "it broke", exec_id="e-1", status=ExecutionStatus.FAILED, failure=failure
    )
    assert type(error) is KitaruUserCodeError
    assert error.failure_origin is FailureOrigin.USER_CODE
    assert (error.checkpoint, error.exception_type, error.exception_message) == (
        "research",
        "ValueError",
        "no sources",
    )
    assert error.traceback == TRACEBACK


# --- operations: usage errors ------------------------------------------------------------


@checkpoint
def double(x: int) -> int:
    return 2 * x


@flow
def doubler(x: int) -> int:
    return double(x)


def test_calling_a_flow_directly_is_a_usage_error_pointing_to_run() -> None:
    with pytest.raises(KitaruUsageError, match=r"\.run\("):
        doubler(2)


def test_negative_retries_are_usage_errors() -> None:
    with pytest.raises(KitaruUsageError, match="retries"):
        checkpoint(retries=-1)(lambda: 1)
    with pytest.raises(KitaruUsageError, match="retries"):
        flow(retries=-1)(lambda: 1)
    with pytest.raises(KitaruUsageError, match="retries"):
        doubler.run(1, retries=-1)


@pytest.mark.parametrize("runtime", ["subprocess", "", 3])
def test_a_checkpoint_runtime_other_than_inline_or_isolated_is_a_usage_error(
    runtime: Any,
) -> None:
    with pytest.raises(KitaruUsageError, match="inline"):
        checkpoint(runtime=runtime)(lambda: 1)


def test_save_with_an_unknown_type_is_a_usage_error() -> None:
    @checkpoint
    def saves(artifact_type: str) -> str:
        try:
            kitaru.save("note", "text", type=artifact_type)
        except KitaruUsageError as exc:
            return f"usage error: {exc}"
        return "saved"

    @flow
    def saving(artifact_type: str) -> str:
        return saves(artifact_type)

    assert saving.run("context").wait(timeout=30) == "saved"
    refused = saving.run("picture").wait(timeout=30)
    assert refused.startswith("usage error:")
    for allowed in ("prompt", "response", "context", "input", "output", "blob"):
        assert allowed in refused


@pytest.mark.parametrize("exec_id", ["latest", "1234", "", "e-1"])
def test_load_with_an_execution_id_that_is_not_a_uuid_is_a_usage_error(exec_id: str) -> None:
    with pytest.raises(KitaruUsageError, match="UUID"):
        kitaru.load(exec_id, "double")


# --- operations: context errors -----------------------------------------------------------


def test_checkpoints_outside_a_flow_are_context_errors() -> None:
    with pytest.raises(KitaruContextError):
        double(1)
    with pytest.raises(KitaruContextError):
        double.submit(1)
    with pytest.raises(KitaruContextError):
        double.map([1, 2])
    with pytest.raises(KitaruContextError):
        double.product([1, 2])


def test_wait_log_and_save_outside_a_flow_are_context_errors() -> None:
    with pytest.raises(KitaruContextError):
        kitaru.wait(schema=int)
    with pytest.raises(KitaruContextError):
        kitaru.log(step=1)
    with pytest.raises(KitaruContextError):
        kitaru.save("note", "text")


@checkpoint
def nested(what: str) -> str:
    """Does inside a checkpoint what only a flow body may do; reports the error type."""
    actions: dict[str, Callable[[], Any]] = {
        "call": lambda: double(1),
        "submit": lambda: double.submit(1),
        "map": lambda: double.map([1]),
        "product": lambda: double.product([1]),
        "wait": lambda: kitaru.wait(schema=int),
    }
    try:
        actions[what]()
    except KitaruError as exc:
        return type(exc).__name__
    return "no error"


@flow
def nesting(what: str) -> str:
    return nested(what)


@pytest.mark.parametrize("what", ["call", "submit", "map", "product", "wait"])
def test_checkpoint_calls_and_waits_inside_a_checkpoint_are_context_errors(what: str) -> None:
    assert nesting.run(what).wait(timeout=30) == "KitaruContextError"


def test_flow_body_save_and_log_are_allowed() -> None:
    # Our superset: 0.21 allowed save()/load() in checkpoints only.
    @flow
    def body_saves() -> str:
        kitaru.save("note", "from the body", type="context")
        kitaru.log(step=1)
        return "ok"

    handle = body_saves.run()
    assert handle.wait(timeout=30) == "ok"
    assert kitaru.load(handle.exec_id, "note") == "from the body"


# --- operations: load ------------------------------------------------------------------------


@checkpoint
def repeat(x: int) -> int:
    return x


@flow
def repeating() -> int:
    repeat(1, id="first")  # type: ignore[call-arg]
    return repeat(2, id="second")  # type: ignore[call-arg]


def test_load_without_a_match_or_with_several_is_a_runtime_error(any_store: str) -> None:
    handle = repeating.run()
    handle.wait(timeout=30)
    with pytest.raises(KitaruRuntimeError, match="'missing'") as missing:
        kitaru.load(handle.exec_id, "missing")
    assert not isinstance(missing.value, KitaruStateError)
    with pytest.raises(KitaruRuntimeError, match="ambiguous"):
        kitaru.load(handle.exec_id, "repeat")
    assert kitaru.load(handle.exec_id, "second") == 2


@checkpoint
def named_result() -> str:
    return "the checkpoint's"


@flow
def result_named_twice(own: bool) -> str:
    if own:
        return named_result(id="result")  # type: ignore[call-arg]
    return "the flow's"


def test_load_result_is_the_flow_result_unless_something_else_has_that_name(
    any_store: str,
) -> None:
    plain = result_named_twice.run(False)
    plain.wait(timeout=30)
    assert kitaru.load(plain.exec_id, "result") == "the flow's"  # as artifacts list names it
    shadowed = result_named_twice.run(True)
    shadowed.wait(timeout=30)
    assert kitaru.load(shadowed.exec_id, "result") == "the checkpoint's"


# --- operations: FlowHandle ------------------------------------------------------------------


@pytest.mark.parametrize(
    "timeout", [0, -1, 0.0, math.nan, math.inf, -math.inf, True, False, "5", [1]], ids=repr
)
def test_wait_with_a_bad_timeout_is_a_usage_error(timeout: Any) -> None:
    handle = doubler.run(1)
    with pytest.raises(KitaruUsageError, match="timeout"):
        handle.wait(timeout=timeout)
    assert handle.wait(timeout=30) == 2  # the execution was not touched


def test_wait_timeout_expiry_leaves_the_execution_untouched(any_store: str) -> None:
    release = threading.Event()

    @checkpoint
    def gate() -> str:
        release.wait(30)
        return "open"

    @flow
    def gated() -> str:
        return gate()

    handle = gated.run()
    try:
        with pytest.raises(KitaruTimeoutError) as info:
            handle.wait(timeout=0.2)
        error = info.value
        assert isinstance(error, TimeoutError)
        assert isinstance(error, KitaruStateError)
        assert error.exec_id == handle.exec_id
        assert error.timeout_seconds == 0.2
        assert error.elapsed_seconds >= 0.2
        assert error.last_status is ExecutionStatus.RUNNING
        assert handle.exec_id in str(error)
        assert handle.status is ExecutionStatus.RUNNING

        with pytest.raises(KitaruStateError, match="still running"):
            handle.get()
    finally:
        release.set()
    assert handle.wait(timeout=30) == "open"
    assert handle.get() == "open"


@checkpoint
def explode(reason: str) -> str:
    raise ValueError(reason)


@flow
def exploding(reason: str) -> str:
    return explode(reason)


def test_a_failed_execution_raises_a_user_code_error_with_a_retry_hint(any_store: str) -> None:
    handle = exploding.run("no sources")
    for read in (handle.wait, handle.get):
        with pytest.raises(KitaruRuntimeError) as info:  # how 0.21 code catches it
            read()
        error = info.value
        assert type(error) is KitaruUserCodeError
        assert error.exec_id == handle.exec_id
        assert error.status is ExecutionStatus.FAILED
        assert error.failure_origin is FailureOrigin.USER_CODE
        assert "no sources" in str(error)
        assert str(error).rstrip().endswith(f"kitaru executions retry {handle.exec_id}")
        assert (error.checkpoint, error.exception_type) == ("explode", "ValueError")


def test_a_cancelled_execution_raises_an_execution_error(any_store: str) -> None:
    started = threading.Event()
    release = threading.Event()

    @checkpoint
    def slow() -> int:
        started.set()
        release.wait(30)
        return 1

    @flow
    def cancellable() -> int:
        slow()
        return double(1)

    handle = cancellable.run()
    try:
        assert started.wait(30)
        KitaruClient().executions.cancel(handle.exec_id)
    finally:
        release.set()
    with pytest.raises(KitaruExecutionError) as info:
        handle.wait(timeout=30)
    error = info.value
    assert type(error) is KitaruExecutionError
    assert error.exec_id == handle.exec_id
    assert error.status is ExecutionStatus.CANCELLED
    assert error.failure_origin is not None
    assert error.failure_origin not in (FailureOrigin.USER_CODE, FailureOrigin.DIVERGENCE)
    assert "cancelled" in str(error)
    assert "executions retry" not in str(error)  # nothing to retry


_code_version = {"value": 1}


@checkpoint
def first_step() -> int:
    return 1


@checkpoint
def other_step() -> int:
    return 2


@checkpoint
def fragile(x: int) -> int:
    if _code_version["value"] == 1:
        raise RuntimeError("fragile is broken")
    return x


@flow
def evolving() -> int:
    if _code_version["value"] == 1:
        return fragile(first_step(id="step"))  # type: ignore[call-arg]
    # The same call id, another checkpoint.
    return fragile(other_step(id="step"))  # type: ignore[call-arg]


def test_a_diverged_execution_raises_a_divergence_error(any_store: str) -> None:
    _code_version["value"] = 1
    handle = evolving.run()
    with pytest.raises(KitaruUserCodeError):
        handle.wait(timeout=30)
    _code_version["value"] = 2
    try:
        KitaruClient().executions.retry(handle.exec_id)
        with pytest.raises(KitaruDivergenceError) as info:
            handle.wait(timeout=30)
    finally:
        _code_version["value"] = 1
    error = info.value
    assert error.exec_id == handle.exec_id
    assert error.status is ExecutionStatus.FAILED
    assert error.failure_origin is FailureOrigin.DIVERGENCE
    assert str(error).rstrip().endswith(f"kitaru executions retry {handle.exec_id}")


# --- operations: client ------------------------------------------------------------------------


def _operations_on(exec_id: str) -> dict[str, Callable[[], Any]]:
    class _Executions:  # the client is made when an operation runs (not at collection)
        def __getattr__(self, name: str) -> Any:
            return getattr(KitaruClient().executions, name)

    executions = _Executions()
    return {
        "get": lambda: executions.get(exec_id),
        "retry": lambda: executions.retry(exec_id),
        "resume": lambda: executions.resume(exec_id),
        "cancel": lambda: executions.cancel(exec_id),
        "logs": lambda: executions.logs(exec_id),
        "replay": lambda: executions.replay(exec_id, at="double"),
        "pending_waits": lambda: executions.pending_waits(exec_id),
        "input": lambda: executions.input(exec_id, wait="approve", value=1),
        "abort_wait": lambda: executions.abort_wait(exec_id, wait="approve"),
        "delete": lambda: executions.delete(exec_id),
        "artifacts.list": lambda: KitaruClient().artifacts.list(exec_id),
        "handle.wait": lambda: kitaru.FlowHandle(exec_id).wait(timeout=5),
        "handle.get": lambda: kitaru.FlowHandle(exec_id).get(),
        "handle.status": lambda: kitaru.FlowHandle(exec_id).status,
        "load": lambda: kitaru.load(exec_id, "double"),
    }


@pytest.mark.parametrize(
    ("exec_id", "operation"),
    [
        (exec_id, operation)
        for exec_id in (UNKNOWN_ID, "no-such-execution")
        for operation in _operations_on(UNKNOWN_ID)
        # load() checks that the id is a UUID first (a usage error, tested above).
        if not (operation == "load" and exec_id != UNKNOWN_ID)
    ],
)
def test_an_unknown_execution_id_is_a_backend_error(
    any_store: str, operation: str, exec_id: str
) -> None:
    with pytest.raises(KitaruRuntimeError) as info:  # how 0.21 code catches it
        _operations_on(exec_id)[operation]()
    assert type(info.value) is KitaruBackendError
    assert str(info.value).startswith(f"Failed to load execution '{exec_id}': ")


def test_an_unknown_artifact_id_is_a_backend_error(any_store: str) -> None:
    with pytest.raises(KitaruBackendError, match="'no-such-artifact'"):
        KitaruClient().artifacts.get("no-such-artifact")


def test_latest_without_a_match_is_a_lookup_error(any_store: str) -> None:
    executions = KitaruClient().executions
    with pytest.raises(LookupError, match="No executions"):
        executions.latest()
    doubler.run(1).wait(timeout=30)
    assert executions.latest().flow_name == "doubler"
    with pytest.raises(LookupError, match="'exploding'"):
        executions.latest(flow="exploding")
    with pytest.raises(LookupError):
        executions.latest(status="failed")


def test_retry_and_resume_of_a_completed_execution_are_state_errors(any_store: str) -> None:
    handle = doubler.run(1)
    handle.wait(timeout=30)
    executions = KitaruClient().executions
    for operation in (executions.retry, executions.resume):
        with pytest.raises(KitaruStateError, match=handle.exec_id):
            operation(handle.exec_id)
    assert executions.get(handle.exec_id).status is ExecutionStatus.COMPLETED


def test_input_and_abort_without_a_pending_wait_are_state_errors(any_store: str) -> None:
    handle = doubler.run(1)
    handle.wait(timeout=30)
    executions = KitaruClient().executions
    with pytest.raises(KitaruStateError, match="no pending wait"):
        executions.input(handle.exec_id, value=1)
    with pytest.raises(KitaruStateError, match="no pending wait"):
        executions.abort_wait(handle.exec_id)
    with pytest.raises(KitaruStateError, match="'approve'"):
        executions.input(handle.exec_id, wait="approve", value=1)


@flow
def approval() -> int:
    return double(kitaru.wait(schema=int, name="approve", question="How many?"))


def test_wait_input_errors_leave_the_execution_waiting(any_store: str) -> None:
    handle = approval.run()
    executions = KitaruClient().executions
    _eventually(
        lambda: bool(executions.pending_waits(handle.exec_id)), what="the wait to be pending"
    )
    with pytest.raises(KitaruWaitValidationError) as invalid:
        executions.input(handle.exec_id, wait="approve", value="many")
    assert isinstance(invalid.value, KitaruUsageError)
    assert isinstance(invalid.value, ValueError)
    with pytest.raises(KitaruStateError, match="'nope'"):
        executions.input(handle.exec_id, wait="nope", value=1)
    with pytest.raises(KitaruStateError, match="'nope'"):
        executions.abort_wait(handle.exec_id, wait="nope")
    assert _status(handle.exec_id) is ExecutionStatus.WAITING
    assert [w.name for w in executions.pending_waits(handle.exec_id)] == ["approve"]

    executions.input(handle.exec_id, wait="approve", value=4)
    assert handle.wait(timeout=30) == 8


def test_replay_with_an_unknown_or_ambiguous_selector_is_a_state_error(any_store: str) -> None:
    handle = repeating.run()
    handle.wait(timeout=30)
    executions = KitaruClient().executions
    with pytest.raises(KitaruStateError, match="'nope'"):
        executions.replay(handle.exec_id, at="nope")
    # Two calls named "repeat" (ids "first", "second"): the name alone is ambiguous.
    with pytest.raises(KitaruStateError, match="ambiguous"):
        executions.replay(handle.exec_id, at="repeat")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"limit": -1},
        {"page": 0, "size": 5},
        {"page": 1, "size": 0},
        {"size": -2},
        {"limit": True},
        {"limit": "3"},
        {"status": "exploded"},
        {"status": ["failed", "exploded"]},
    ],
    ids=repr,
)
def test_bad_list_arguments_are_usage_errors(any_store: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(KitaruUsageError):
        KitaruClient().executions.list(**kwargs)


@pytest.mark.parametrize("limit", [0, -5])
def test_logs_and_artifacts_with_a_limit_below_one_are_usage_errors(
    any_store: str, limit: int
) -> None:
    handle = doubler.run(1)
    handle.wait(timeout=30)
    client = KitaruClient()
    with pytest.raises(KitaruUsageError, match="limit"):
        client.executions.logs(handle.exec_id, limit=limit)
    with pytest.raises(KitaruUsageError, match="limit"):
        client.artifacts.list(handle.exec_id, limit=limit)
    assert len(client.artifacts.list(handle.exec_id, limit=1)) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_url": "https://kitaru.example.com"},
        {"auth_token": "secret-token"},
        {"project": "research"},
        {"server_url": "https://kitaru.example.com", "auth_token": "t", "project": "p"},
    ],
    ids=lambda kw: ",".join(kw),
)
def test_client_connection_overrides_are_not_available(kwargs: dict[str, str]) -> None:
    with pytest.raises(KitaruFeatureNotAvailableError) as info:
        KitaruClient(**kwargs)
    assert isinstance(info.value, NotImplementedError)
    for name in kwargs:
        assert name in str(info.value)
    assert "secret-token" not in str(info.value)  # never echo a credential
