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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kitaru import errors
from kitaru._blobs import BlobLocationError

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
    # A blob URI outside the artifact root is refused, not the store failing: no 503
    # ("unavailable, try again"). Its type stays KitaruBackendError, as a local read
    # raises, so a runner reading through the server fails the same way (no retry).
    (BlobLocationError, 403),
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

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        unreadable = _unreadable_body(exc.errors(), request.headers.get("content-type"))
        if unreadable is not None:
            return error_response(422, "KitaruUsageError", unreadable)
        problems = "; ".join(_describe(e) for e in exc.errors()[:5])
        return error_response(422, "KitaruUsageError", f"Invalid request: {problems}.")

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        error_type = "KitaruNotFoundError" if exc.status_code == 404 else "KitaruUsageError"
        return error_response(exc.status_code, error_type, str(exc.detail))

    async def unstorable(_request: Request, exc: Exception) -> JSONResponse:
        if out_of_range(exc):
            return error_response(422, "KitaruUsageError", OUT_OF_RANGE)
        if _sqlstate(exc) == _PG_BAD_TEXT:  # e.g. NaN where PostgreSQL stores JSON
            return error_response(
                422,
                "KitaruUsageError",
                "The request holds a value the store cannot keep as given (PostgreSQL: "
                f"{_first_line(exc)}); NaN and Infinity, for one, are no JSON numbers. "
                "Send finite numbers and plain JSON data.",
            )
        # e.g. a NUL character in an id or name: PostgreSQL refuses such text.
        return error_response(
            400,
            "KitaruUsageError",
            "The request holds text the store cannot compare (a NUL character or invalid "
            "Unicode in an id or name); no stored item can match it.",
        )

    async def too_large_number(_request: Request, exc: Exception) -> JSONResponse:
        # SQLite's driver cannot even bind an int past 64 bits (PostgreSQL's answer is a
        # DataError, above): a number no stored row has, refused as a usage error.
        return error_response(422, "KitaruUsageError", OUT_OF_RANGE)

    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("Unexpected error while serving a request")
        return _internal(exc)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(errors.KitaruError, kitaru_error)
    app.add_exception_handler(LookupError, kitaru_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(sa_exc.DataError, unstorable)
    app.add_exception_handler(OverflowError, too_large_number)
    try:  # raised by PostgreSQL's driver itself, where Kitaru calls it directly
        import psycopg

        app.add_exception_handler(psycopg.DataError, unstorable)
    except ImportError:  # no PostgreSQL support installed: no such error
        pass
    app.add_exception_handler(Exception, unexpected)
    # Inside the other middleware (added first): see AnswerUnexpected.
    app.add_middleware(AnswerUnexpected)


def _internal(exc: BaseException) -> JSONResponse:
    return error_response(
        500, "KitaruError", f"Internal server error ({type(exc).__name__}); see the server's log."
    )


class AnswerUnexpected:
    """Answers an unexpected error with its 500 here, and keeps the connection usable.

    Starlette answers such an error in its outermost layer and then raises it again for
    the server to log, and uvicorn closes the connection: a keep-alive client's next
    request then fails with a connection reset. An error after the answer started (a
    stream) is left to go on up: nothing more can be said on that answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise
            logger.exception("Unexpected error while serving a request")
            await _internal(exc)(scope, receive, send)


#: The largest integer the stores keep (SQLite's and PostgreSQL's 64-bit integers).
MAX_STORED_INT = 2**63 - 1
OUT_OF_RANGE = (
    "A number in the request is outside the range the store keeps (whole numbers from "
    f"{-MAX_STORED_INT - 1} to {MAX_STORED_INT}; ids of log lines and events up to "
    f"{2**31 - 1}), so no stored item can match it. Pass a smaller number."
)
#: SQLSTATE 22003 (numeric_value_out_of_range): PostgreSQL's word for such a number.
_PG_OUT_OF_RANGE = "22003"


#: SQLSTATE 22P02 (invalid_text_representation): e.g. a JSON document holding NaN.
_PG_BAD_TEXT = "22P02"


def _sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of ``exc`` or of the driver error it wraps, if any."""
    for error in (exc, getattr(exc, "orig", None)):
        state = getattr(error, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def _first_line(exc: BaseException) -> str:
    error = getattr(exc, "orig", None) or exc
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def out_of_range(exc: BaseException) -> bool:
    """Whether ``exc`` (or the driver error it wraps) is a number out of the store's
    range: SQLite's OverflowError, PostgreSQL's numeric_value_out_of_range."""
    if isinstance(exc, OverflowError) or isinstance(getattr(exc, "orig", None), OverflowError):
        return True
    return _sqlstate(exc) == _PG_OUT_OF_RANGE


def _unreadable_body(problems: Any, content_type: str | None) -> str | None:
    """Words for a body that was not JSON at all, rather than what the model lacks."""
    for problem in problems:
        loc = tuple(problem.get("loc", ()))
        if problem.get("type") == "json_invalid":
            reason = (problem.get("ctx") or {}).get("error") or "it does not parse"
            at = f" at character {loc[1]}" if len(loc) > 1 else ""
            return (
                f"The request body is not valid JSON ({reason}{at}); send a JSON object "
                "with Content-Type: application/json."
            )
        if loc == ("body",) and isinstance(problem.get("input"), bytes | bytearray):
            # The body was not read as JSON: its Content-Type does not say JSON.
            return (
                f"The request body was not sent as JSON (Content-Type: {content_type or 'none'}"
                "); send a JSON object with Content-Type: application/json."
            )
    return None


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
