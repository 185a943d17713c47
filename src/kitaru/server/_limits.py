"""Request limits as plain ASGI middleware: body size cap and answer deadline."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _error(error_type: str, message: str) -> bytes:
    # The same compact JSON as the routes' error bodies (Starlette's JSONResponse).
    body = {"error": {"type": error_type, "message": message}}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class BodyCap:
    """A body cap of the routes whose path matches ``path`` (instead of the general one).

    ``error_type`` and ``message`` make the 413: ``message`` is formatted with the cap as
    ``{limit}`` and should say what to do instead.
    """

    path: re.Pattern[str]
    limit: int
    error_type: str = "KitaruUsageError"
    message: str = ""


class BodySizeLimit:
    """Refuses bodies above ``max_bytes`` (other caps for some routes: ``caps``) with 413,
    and JSON bodies holding NaN or Infinity with 422 (but on the ``judged`` routes, whose
    handler refuses them itself, in its own words).

    Python reads ``NaN`` in JSON as a float that no JSON document can hold: a store then
    keeps it or not (SQLite keeps it and reads back null, PostgreSQL refuses the row), so
    the same request would do different things on each. It is refused before that.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        caps: Sequence[BodyCap] = (),
        judged: Sequence[re.Pattern[str]] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.caps = tuple(caps)
        self.judged = tuple(judged)

    def _cap(self, path: str) -> tuple[int, bytes]:
        """The cap of ``path`` and the answer that refuses a body over it."""
        for cap in self.caps:
            if cap.path.fullmatch(path):
                message = cap.message.format(limit=cap.limit)
                return cap.limit, _error(cap.error_type, message)
        message = (
            f"The request body is larger than this server accepts ({self.max_bytes} bytes, "
            "KITARU_SERVER_MAX_BODY_BYTES)."
        )
        return self.max_bytes, _error("KitaruUsageError", message)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, refusal = self._cap(scope.get("path", ""))
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await _answer(send, 413, refusal)
                    return
        # Read the body here (it is small: capped) so that an oversized one, with or
        # without a Content-Length, is refused before any handler runs.
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await _answer(send, 413, refusal)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        path = scope.get("path", "")
        if _json(scope) and not any(p.fullmatch(path) for p in self.judged):
            constant = non_finite_constant(body)
            if constant is not None:
                await _answer(
                    send,
                    422,
                    _error(
                        "KitaruUsageError",
                        f"The request body holds {constant}: JSON has no such number (no "
                        "NaN, Infinity or -Infinity), and the store cannot keep one; nothing "
                        "was done. Send finite numbers, or null.",
                    ),
                )
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return b"json" in value.lower()
    return False


def non_finite_constant(body: bytes) -> str | None:
    """The first ``NaN``, ``Infinity`` or ``-Infinity`` of a JSON ``body`` (not in text)."""
    if b"NaN" not in body and b"Infinity" not in body:
        return None  # the common case: no full parse
    found: list[str] = []

    def constant(name: str) -> float:
        found.append(name)
        return 0.0

    try:
        json.loads(body, parse_constant=constant)
    except (ValueError, RecursionError):  # not JSON: the route says so in its own words
        return None
    return found[0] if found else None


class RequestTimeout:
    """504 when a request has not started its answer within ``seconds``.

    Counts from the first byte of the request to the start of the answer: a
    client trickling its body or a handler stuck on a locked store cannot hold a
    connection forever. Once an answer has started (an SSE stream, a download)
    it may take as long as it needs.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = asyncio.Event()

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, tracked))
        waiter = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait({task, waiter}, timeout=self.seconds, return_when="FIRST_COMPLETED")
        finally:
            waiter.cancel()
        if not started.is_set() and not task.done():
            task.cancel()
            await _answer(
                send,
                504,
                _error(
                    "KitaruBackendError",
                    f"The server did not answer within {self.seconds:g} s "
                    "(KITARU_SERVER_REQUEST_TIMEOUT). The operation may still complete: "
                    "check the state of what you changed before trying again.",
                ),
            )
            return
        await task
