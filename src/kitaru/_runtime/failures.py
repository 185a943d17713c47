"""Telling the runner's own failures (store, disk) from the user's code failing.

Failure origin is decided by *who* raised, not by the exception's type: an
``OSError`` from a checkpoint's own file handling is the user's, the same
``OSError`` from writing that checkpoint's output to the blob store is ours.
So the runtime wraps its own store and blob operations (``ExecutionContext.
backend_failed``): a store or disk error there becomes a ``RunnerBackendError``
and is remembered on the context, and the driver records the execution as failed
with origin ``backend`` whatever the flow body did with the exception.
"""

from __future__ import annotations

import sys
from typing import Any

from kitaru._store import StaleOwnerError
from kitaru.errors import FailureOrigin, KitaruBackendError


class RunnerBackendError(KitaruBackendError):
    """The store or the artifact store failed under the runtime, not in user code."""


def is_backend_error(exc: BaseException) -> bool:
    """A store, database driver or filesystem error (not a lost ownership)."""
    if isinstance(exc, StaleOwnerError):
        return False  # cancelled or taken over: handled as a cancellation
    if isinstance(exc, KitaruBackendError | OSError):
        return True
    # Only look at the modules already loaded: importing them costs startup time.
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError):
        return True
    sqlite3 = sys.modules.get("sqlite3")
    return sqlite3 is not None and isinstance(exc, sqlite3.Error)


def describe(exc: BaseException) -> str:
    """A one-line account of a backend error (our messages already say what failed)."""
    text = str(exc) if isinstance(exc, KitaruBackendError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def exception_type_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, ``module.Class`` for everything else."""
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _type_name(exc: BaseException) -> str:
    if isinstance(exc, KitaruBackendError):
        return "kitaru.errors.KitaruBackendError"  # our subclasses are private
    return exception_type_name(exc)


def runner_error(exec_id: str, what: str, exc: BaseException) -> RunnerBackendError:
    return RunnerBackendError(f"Kitaru could not {what} for execution {exec_id}: {describe(exc)}")


def backend_failure(exc: BaseException, *, checkpoint: str | None) -> dict[str, Any]:
    """The failure record of an execution stopped by a store or disk failure.

    ``resumable`` lets ``resume`` continue it once the cause is fixed; it is not
    ``retryable``: re-running the body at once on a failing store would only
    re-run user code (and pay for its LLM calls again) to fail the same way.
    """
    import traceback

    return {
        "origin": FailureOrigin.BACKEND.value,
        "checkpoint": checkpoint,
        "exception_type": _type_name(exc),
        "message": describe(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "retryable": False,
        "resumable": True,
    }
