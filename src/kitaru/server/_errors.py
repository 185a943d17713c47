"""Kitaru errors as HTTP answers: a status code and ``{"error": {"type", "message"}}``.

The ``type`` is the Kitaru error class name, so a remote client raises the same
class a local call would. Nothing else leaves the server: no tracebacks.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from kitaru import errors

logger = logging.getLogger("kitaru.server")


class ApiError(Exception):
    """An answer with a chosen status, carrying a Kitaru error type and message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def not_found(error_type: str, message: str) -> ApiError:
    return ApiError(404, error_type, message)


#: Most specific first: the first base an error is an instance of decides.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (errors.KitaruWaitValidationError, 422),
    (errors.KitaruNotFoundError, 404),
    (errors.KitaruTimeoutError, 408),
    (errors.KitaruUsageError, 400),
    (errors.KitaruContextError, 400),
    (errors.KitaruStateError, 409),
    (errors.KitaruFeatureNotAvailableError, 501),
    (errors.KitaruBackendError, 503),
    (errors.KitaruError, 400),
    (LookupError, 404),
)


def status_of(exc: BaseException) -> int:
    # The client reports an unknown id as a KitaruBackendError (as Kitaru 0.21 does);
    # over HTTP that is a 404 with the same error type.
    if isinstance(exc, errors.KitaruBackendError) and str(exc).startswith("Failed to load "):
        return 404
    for base, status in _STATUS:
        if isinstance(exc, base):
            return status
    return 500


def error_response(
    status: int,
    error_type: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": error_type, "message": message}
    if details:  # only errors that have them (an invalid wait answer): the rest stay as 0.21's
        body["details"] = details
    return JSONResponse(
        {"error": body},
        status_code=status,
        headers=headers or None,
    )


def install(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return error_response(exc.status, exc.error_type, exc.message, headers=headers)

    async def kitaru_error(_request: Request, exc: Exception) -> JSONResponse:
        details = getattr(exc, "details", None) if isinstance(exc, errors.KitaruError) else None
        return error_response(
            status_of(exc), errors.public_type_name(exc), _without_store(str(exc)), details
        )

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(_describe(e) for e in exc.errors()[:5])
        return error_response(422, "KitaruUsageError", f"Invalid request: {problems}.")

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        error_type = "KitaruNotFoundError" if exc.status_code == 404 else "KitaruUsageError"
        return error_response(exc.status_code, error_type, str(exc.detail))

    async def unstorable(_request: Request, exc: Exception) -> JSONResponse:
        # e.g. a NUL character in an id or name: PostgreSQL refuses such text.
        return error_response(
            400,
            "KitaruUsageError",
            "The request holds text the store cannot compare (a NUL character or invalid "
            "Unicode in an id or name); no stored item can match it.",
        )

    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("Unexpected error while serving a request")
        return error_response(
            500,
            "KitaruError",
            f"Internal server error ({type(exc).__name__}); see the server's log.",
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(errors.KitaruError, kitaru_error)
    app.add_exception_handler(LookupError, kitaru_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(sa_exc.DataError, unstorable)
    app.add_exception_handler(Exception, unexpected)


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{where or 'body'}: {error.get('msg', 'invalid')}"


def _without_store(message: str) -> str:
    """``message`` without the server's store location (a path on the server, a database
    host): a client needs neither, and a read-only key must not learn them."""
    from kitaru._backend import get_backend

    try:
        store = get_backend().store
    except Exception:  # no store open: nothing of it to hide
        return message
    for shown in (repr(store), store.url):
        if shown and shown in message:
            # "in the store <location>" reads "in the server's store", not "the ... the".
            message = message.replace(f"the store {shown}", "the server's store")
            message = message.replace(shown, "the server's store")
    return message
