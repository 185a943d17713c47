"""Kitaru's error hierarchy and the helpers that turn failures into typed errors.

The tree and the builtin bases are Kitaru 0.21's, so code written for 0.21
(``except ValueError``, ``except KitaruRuntimeError``, ...) catches the same
errors here::

    KitaruError(Exception)
    ├─ KitaruUsageError(ValueError)
    │  ├─ KitaruWaitValidationError
    │  ├─ KitaruStackIntegrationDependencyError (also an ImportError)
    │  └─ KitaruDeploymentInputValuesError
    ├─ KitaruContextError(RuntimeError)
    ├─ KitaruStateError(RuntimeError)
    │  ├─ KitaruTimeoutError(TimeoutError)
    │  └─ KitaruNotFoundError(LookupError)
    ├─ KitaruRuntimeError(RuntimeError)
    │  ├─ KitaruAmbiguousFlowResultError
    │  ├─ KitaruExecutionError ── KitaruUserCodeError, KitaruDivergenceError
    │  └─ KitaruBackendError ── KitaruLogRetrievalError
    ├─ KitaruFeatureNotAvailableError(NotImplementedError)
    └─ KitaruWaitAbortedError

Every message says what happened, to what (ids, names) and what to do next.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitaru._store.records import ExecutionStatus


class FailureOrigin(StrEnum):
    """Where an execution failure came from."""

    USER_CODE = "user_code"
    RUNTIME = "runtime"
    BACKEND = "backend"
    DIVERGENCE = "divergence"
    UNKNOWN = "unknown"


# --- the tree ---------------------------------------------------------------------------


class KitaruError(Exception):
    """Base class of every error raised by Kitaru."""


class KitaruUsageError(KitaruError, ValueError):
    """The API was called with invalid arguments or in an unsupported way."""


class KitaruContextError(KitaruError, RuntimeError):
    """A Kitaru primitive was used outside the context it needs (e.g. outside a flow)."""


class KitaruStateError(KitaruError, RuntimeError):
    """The operation does not fit the current state (still running, no pending wait, ...)."""


class KitaruRuntimeError(KitaruError, RuntimeError):
    """Kitaru's runtime, an execution or the backend failed."""


class KitaruFeatureNotAvailableError(KitaruError, NotImplementedError):
    """The feature exists in the API but is not available in this setup."""


class KitaruWaitValidationError(KitaruUsageError):
    """Input given to a pending wait does not match its schema.

    ``details`` lists the problems one by one (``{"path": [...], "message": ...}``, the
    path pointing at the offending field) so a form can show each next to its field;
    the message says the same in words.
    """

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details: list[dict[str, Any]] = details or []


class KitaruStackIntegrationDependencyError(KitaruUsageError, ImportError):
    """A stack needs an optional dependency that is not installed."""


class KitaruDeploymentInputValuesError(KitaruUsageError):
    """A deployment needs concrete input values that were not given."""


class StackNotRemoteExecutable:
    """Marker mixin: the error comes from a stack that cannot run executions remotely."""


class KitaruStackNotRemoteExecutableUsageError(StackNotRemoteExecutable, KitaruUsageError):
    """A deployment was asked for on a stack that cannot run executions remotely."""


class KitaruStackNotRemoteExecutableStateError(StackNotRemoteExecutable, KitaruStateError):
    """A deployment's stack turned out not to run executions remotely."""


class KitaruNotFoundError(KitaruStateError, LookupError):
    """A query matched nothing (e.g. ``executions.latest()`` on an empty store)."""


class KitaruAmbiguousFlowResultError(KitaruRuntimeError):
    """A flow's result cannot be determined unambiguously."""


class KitaruBackendError(KitaruRuntimeError):
    """The metadata store or the artifact store failed, lacks a record or holds bad data."""


class KitaruLogRetrievalError(KitaruBackendError):
    """Captured logs could not be read back."""


class KitaruAuthenticationError(KitaruError):
    """A Kitaru server refused the API key (HTTP 401): unknown, rotated or deleted."""


class KitaruPermissionError(KitaruError):
    """The API key may not do this on the server (HTTP 403), e.g. a read-only key on a
    control route, or a key without --runner recording executions."""


class KitaruWaitAbortedError(KitaruError):
    """The pending wait was aborted instead of answered.

    Raised by ``kitaru.wait()`` in the flow body, which may catch it (e.g. to
    take a "rejected" branch); uncaught, the execution fails.
    """

    def __init__(self, message: str, *, exec_id: str, wait: str) -> None:
        super().__init__(message)
        self.exec_id = exec_id
        self.wait = wait

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields: the default (args-only) pickling could not rebuild it,
        # and isolated checkpoints send exceptions across processes by pickle.
        return (functools.partial(type(self), exec_id=self.exec_id, wait=self.wait), self.args)


def _coerce_status(status: ExecutionStatus | str | None) -> ExecutionStatus | None:
    """``status`` as an ``ExecutionStatus`` (any case); ``KitaruUsageError`` if unknown."""
    if status is None:
        return None
    # Imported here: the store's records import this module.
    from kitaru._store.records import ExecutionStatus

    if isinstance(status, ExecutionStatus):
        return status
    try:
        return ExecutionStatus(str(status).strip().lower())
    except ValueError:
        known = ", ".join(s.value for s in ExecutionStatus)
        raise KitaruUsageError(
            f"Unknown execution status {status!r}; use one of: {known}."
        ) from None


class KitaruExecutionError(KitaruRuntimeError):
    """An execution ended without a result (failed or cancelled).

    ``exec_id``, ``status`` and ``failure_origin`` say which execution, how it
    ended and where the failure came from; Kitaru also fills in the failing
    checkpoint and the original exception's type, message and traceback when
    it knows them.
    """

    def __init__(
        self,
        message: str,
        *,
        exec_id: str | None = None,
        status: ExecutionStatus | str | None = None,
        failure_origin: FailureOrigin | str | None = None,
        checkpoint: str | None = None,
        exception_type: str | None = None,
        exception_message: str | None = None,
        traceback: str | None = None,
    ) -> None:
        super().__init__(message)
        self.exec_id = exec_id
        self.status = _coerce_status(status)
        self.failure_origin = None if failure_origin is None else FailureOrigin(failure_origin)
        self.checkpoint = checkpoint
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.traceback = traceback


class KitaruUserCodeError(KitaruExecutionError):
    """The execution failed because user code (a flow body or checkpoint) raised."""


class KitaruDivergenceError(KitaruExecutionError):
    """The flow body no longer makes the checkpoint calls that were recorded."""


class KitaruTimeoutError(KitaruStateError, TimeoutError):
    """Waiting for an execution took longer than the timeout; the execution is untouched."""

    def __init__(
        self,
        *,
        exec_id: str,
        timeout_seconds: float,
        elapsed_seconds: float,
        last_status: ExecutionStatus | str,
    ) -> None:
        status = _coerce_status(last_status)
        assert status is not None
        super().__init__(
            f"Execution {exec_id} did not finish within the timeout of {timeout_seconds:g} s "
            f"(waited {elapsed_seconds:.2f} s; last status: {status.value}). The execution "
            "was not changed and keeps going: call .wait() again, or check it with "
            f"`kitaru executions get {exec_id}`."
        )
        self.exec_id = exec_id
        self.timeout_seconds = timeout_seconds
        self.elapsed_seconds = elapsed_seconds
        self.last_status = status

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor: rebuild from the fields, not from ``args``.
        rebuild = functools.partial(
            type(self),
            exec_id=self.exec_id,
            timeout_seconds=self.timeout_seconds,
            elapsed_seconds=self.elapsed_seconds,
            last_status=self.last_status,
        )
        return (rebuild, ())


# --- failure helpers --------------------------------------------------------------------

# Lower-case fragments of failure text that point to an origin, most specific first.
_TEXT_HINTS: tuple[tuple[FailureOrigin, tuple[str, ...]], ...] = (
    (FailureOrigin.DIVERGENCE, ("diverge", "durable call sequence", "replay mismatch")),
    (
        FailureOrigin.RUNTIME,
        (
            "kitaruruntimeerror",
            "serializ",
            "deserializ",
            "materializ",
            "cannot store the value",
            "could not persist",
        ),
    ),
    (
        FailureOrigin.BACKEND,
        (
            "kitarubackenderror",
            "store failed",
            "connection refused",
            "transport error",
            "failed to fetch",
            "api unavailable",
        ),
    ),
)


def traceback_last_line(traceback: str | None) -> str | None:
    """The last non-blank line of a formatted traceback (``"ValueError: boom"``), or None."""
    if not traceback:
        return None
    for line in reversed(traceback.splitlines()):
        if line.strip():
            return line.strip()
    return None


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)\s*(?::|$)")


def traceback_exception_type(traceback: str | None) -> str | None:
    """The exception type named on a traceback's last line (``"ValueError"``), or None."""
    last = traceback_last_line(traceback)
    if last is None:
        return None
    match = _EXCEPTION_LINE.match(last)
    return match.group(1) if match else None


def classify_failure_origin(
    failure: BaseException | Mapping[str, Any] | None = None,
    /,
    *,
    status_reason: str | None = None,
    traceback: str | None = None,
    default: FailureOrigin = FailureOrigin.UNKNOWN,
) -> FailureOrigin:
    """Where a failure came from.

    ``failure`` is an exception or a recorded failure mapping (its ``origin``
    wins when present). Without one (or when it says nothing), the text of
    ``status_reason`` and ``traceback`` is searched conservatively for signs of
    divergence, runtime or backend trouble; ``default`` when nothing matches.
    """
    texts = [status_reason or "", traceback or ""]
    if isinstance(failure, BaseException):
        if isinstance(failure, KitaruExecutionError) and failure.failure_origin is not None:
            return failure.failure_origin
        if isinstance(failure, KitaruDivergenceError):
            return FailureOrigin.DIVERGENCE
        if isinstance(failure, KitaruBackendError):
            return FailureOrigin.BACKEND
        if isinstance(failure, KitaruRuntimeError):
            return FailureOrigin.RUNTIME
        texts.append(f"{type(failure).__name__}: {failure}")
    elif failure is not None:
        origin = failure.get("origin")
        if origin:
            try:
                return FailureOrigin(origin)
            except ValueError:
                pass  # written by another version: fall back to the text
        texts += [str(failure.get("message") or ""), str(failure.get("traceback") or "")]
        texts.append(str(failure.get("exception_type") or ""))
    text = "\n".join(texts).lower()
    for origin_hint, fragments in _TEXT_HINTS:
        if any(fragment in text for fragment in fragments):
            return origin_hint
    return default


def build_recovery_command(exec_id: str, *, status: ExecutionStatus | str) -> str | None:
    """The CLI command that continues an execution with this status, or None if none does.

    A failed execution is retried in place (same id; completed checkpoints are reused).
    """
    if str(status).strip().lower() == "failed":
        return f"kitaru executions retry {exec_id}"
    return None


def format_recovery_hint(exec_id: str, *, status: ExecutionStatus | str) -> str | None:
    """A user-facing hint with the recovery command for this status, or None if none applies."""
    command = build_recovery_command(exec_id, status=status)
    if command is None:
        return None
    return (
        "Fix the cause, then continue from where it stopped (completed checkpoints are "
        f"reused) with:\n\n  {command}"
    )


def execution_error_from_failure(
    message: str,
    *,
    exec_id: str,
    status: ExecutionStatus | str,
    origin: FailureOrigin | str | None = None,
    failure: Mapping[str, Any] | None = None,
) -> KitaruExecutionError:
    """The typed error for an unsuccessful execution.

    ``KitaruDivergenceError`` for a divergence, ``KitaruUserCodeError`` for user
    code, else ``KitaruExecutionError``; ``origin`` defaults to what
    :func:`classify_failure_origin` makes of ``failure`` (a recorded failure
    mapping: ``origin``, ``checkpoint``, ``exception_type``, ``message``,
    ``traceback``), whose details also fill the error's attributes.
    """
    details = failure or {}
    resolved = FailureOrigin(origin) if origin is not None else classify_failure_origin(failure)
    error_type: type[KitaruExecutionError]
    if resolved is FailureOrigin.DIVERGENCE:
        error_type = KitaruDivergenceError
    elif resolved is FailureOrigin.USER_CODE:
        error_type = KitaruUserCodeError
    else:
        error_type = KitaruExecutionError
    trace = details.get("traceback")
    return error_type(
        message,
        exec_id=exec_id,
        status=status,
        failure_origin=resolved,
        checkpoint=details.get("checkpoint"),
        exception_type=details.get("exception_type") or traceback_exception_type(trace),
        exception_message=details.get("message"),
        traceback=trace,
    )


def execution_not_found(exec_id: str, detail: str) -> KitaruBackendError:
    """The error for an execution id the store does not hold (0.21's wording)."""
    return KitaruBackendError(f"Failed to load execution '{exec_id}': {detail}")


def artifact_not_found(artifact_id: str, detail: str) -> KitaruBackendError:
    """The error for an artifact id the store does not hold (as for executions)."""
    return KitaruBackendError(f"Failed to load artifact '{artifact_id}': {detail}")


class KitaruBackendExecutionError(KitaruExecutionError, KitaruBackendError):
    """The execution stopped because the store or the artifact store failed under it.

    Both an execution error (``exec_id``, ``status``, ``failure_origin`` =
    ``backend``) and a backend error; the execution can be resumed once the
    cause (a full disk, an unreachable database) is fixed.
    """


class KitaruWarning(UserWarning):
    """Base of Kitaru's warnings (outside 0.21's error tree: nothing raises these)."""


class KitaruPlainDataWarning(KitaruWarning):
    """A stored value was returned as plain JSON data: its class cannot be loaded here."""


def public_type_name(exc: BaseException) -> str:
    """The nearest class of ``exc`` that Kitaru's API names (a ``kitaru.errors`` class):
    what the CLI's and the server's error documents call it, whatever internal subclass
    was raised (e.g. an unknown replay selector is a ``KitaruStateError``)."""
    import sys

    module = sys.modules[__name__]
    for cls in type(exc).__mro__:
        if getattr(module, cls.__name__, None) is cls:
            return str(cls.__name__)
    return "LookupError" if isinstance(exc, LookupError) else "KitaruError"


__all__ = [
    "FailureOrigin",
    "KitaruAmbiguousFlowResultError",
    "KitaruAuthenticationError",
    "KitaruBackendError",
    "KitaruContextError",
    "KitaruDeploymentInputValuesError",
    "KitaruDivergenceError",
    "KitaruError",
    "KitaruExecutionError",
    "KitaruFeatureNotAvailableError",
    "KitaruLogRetrievalError",
    "KitaruNotFoundError",
    "KitaruPermissionError",
    "KitaruPlainDataWarning",
    "KitaruRuntimeError",
    "KitaruStackIntegrationDependencyError",
    "KitaruStackNotRemoteExecutableStateError",
    "KitaruStackNotRemoteExecutableUsageError",
    "KitaruStateError",
    "KitaruTimeoutError",
    "KitaruUsageError",
    "KitaruUserCodeError",
    "KitaruWaitAbortedError",
    "KitaruWaitValidationError",
    "KitaruWarning",
    "StackNotRemoteExecutable",
    "build_recovery_command",
    "classify_failure_origin",
    "execution_error_from_failure",
    "format_recovery_hint",
    "traceback_exception_type",
    "traceback_last_line",
]
