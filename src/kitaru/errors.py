"""Kitaru's error hierarchy.

Every error Kitaru raises derives from :class:`KitaruError`. Messages say what
happened, to what (ids, names) and what to do next.
"""

from __future__ import annotations

from enum import StrEnum


class FailureOrigin(StrEnum):
    """Where an execution failure came from."""

    USER_CODE = "user_code"
    RUNTIME = "runtime"
    BACKEND = "backend"
    DIVERGENCE = "divergence"
    UNKNOWN = "unknown"


class KitaruError(Exception):
    """Base class of every error raised by Kitaru."""


class KitaruUsageError(KitaruError, ValueError):
    """The API was called with invalid arguments or in an unsupported way."""


class KitaruContextError(KitaruError):
    """A Kitaru primitive was used outside the context it needs (e.g. outside a flow)."""


class KitaruStateError(KitaruError):
    """The operation does not fit the current state (unknown id, still running, ...)."""


class KitaruRuntimeError(KitaruError):
    """Kitaru's runtime itself failed."""


class KitaruBackendError(KitaruError):
    """The metadata store or the artifact store failed or holds unreadable data."""


class KitaruLogRetrievalError(KitaruBackendError):
    """Captured logs could not be read back."""


class KitaruWaitValidationError(KitaruError):
    """Input given to a pending wait does not match its schema."""


class KitaruWaitAbortedError(KitaruError):
    """The pending wait was aborted instead of answered.

    Raised by ``kitaru.wait()`` in the flow body, which may catch it (e.g. to
    take a "rejected" branch); uncaught, the execution fails.
    """

    def __init__(self, message: str, *, exec_id: str, wait: str) -> None:
        super().__init__(message)
        self.exec_id = exec_id
        self.wait = wait


class KitaruTimeoutError(KitaruError, TimeoutError):
    """Waiting for something took longer than the given timeout."""


class KitaruFeatureNotAvailableError(KitaruError):
    """The feature exists in the API but is not available in this setup."""


class KitaruStackIntegrationDependencyError(KitaruError, ImportError):
    """A stack needs an optional dependency that is not installed."""


class KitaruAmbiguousFlowResultError(KitaruError):
    """A flow's result cannot be determined unambiguously."""


class KitaruExecutionError(KitaruError):
    """An execution ended without a result (failed or cancelled).

    Carries what a caller needs to decide what to do next: the execution id,
    its status, where the failure came from, the failing checkpoint and the
    original exception's type and message.
    """

    def __init__(
        self,
        message: str,
        *,
        exec_id: str,
        status: str,
        failure_origin: FailureOrigin = FailureOrigin.UNKNOWN,
        checkpoint: str | None = None,
        exception_type: str | None = None,
        exception_message: str | None = None,
        traceback: str | None = None,
    ) -> None:
        super().__init__(message)
        self.exec_id = exec_id
        self.status = status
        self.failure_origin = failure_origin
        self.checkpoint = checkpoint
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.traceback = traceback


class KitaruUserCodeError(KitaruExecutionError):
    """The execution failed because user code (a flow body or checkpoint) raised."""


class KitaruDivergenceError(KitaruExecutionError):
    """The flow body no longer makes the checkpoint calls that were recorded."""


class KitaruBackendExecutionError(KitaruExecutionError, KitaruBackendError):
    """The execution stopped because the store or the artifact store failed under it.

    Both an execution error (``exec_id``, ``status``, ``failure_origin`` =
    ``backend``) and a backend error; the execution can be resumed once the
    cause (a full disk, an unreachable database) is fixed.
    """


__all__ = [
    "FailureOrigin",
    "KitaruAmbiguousFlowResultError",
    "KitaruBackendError",
    "KitaruContextError",
    "KitaruDivergenceError",
    "KitaruError",
    "KitaruExecutionError",
    "KitaruFeatureNotAvailableError",
    "KitaruLogRetrievalError",
    "KitaruRuntimeError",
    "KitaruStackIntegrationDependencyError",
    "KitaruStateError",
    "KitaruTimeoutError",
    "KitaruUsageError",
    "KitaruUserCodeError",
    "KitaruWaitAbortedError",
    "KitaruWaitValidationError",
]
