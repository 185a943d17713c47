"""Request limits as plain ASGI middleware: body size cap and answer deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _error(error_type: str, message: str) -> bytes:
    return json.dumps({"error": {"type": error_type, "message": message}}).encode()


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


class BodySizeLimit:
    """Refuses bodies above ``max_bytes`` (per-path caps in ``per_path``) with 413."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, per_path: Mapping[str, tuple[int, str]] = {}
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        #: path -> (cap, the setting that changes it)
        self.per_path = dict(per_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.per_path.get(
            scope.get("path", ""), (self.max_bytes, "KITARU_SERVER_MAX_BODY_BYTES")
        )
        refusal = _error(
            "KitaruUsageError",
            f"The request body is larger than this server accepts ({limit} bytes, {setting}).",
        )
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
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


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
