"""A fake LLM provider on a loopback port, for tests that run the real SDKs.

It speaks just enough of three wire protocols for the official ``openai`` and
``anthropic`` SDKs (and frameworks built on them) to work unmodified:

* OpenAI Chat Completions: ``POST /v1/chat/completions`` (plain and streaming SSE,
  text and tool calls, ``stream_options.include_usage``);
* OpenAI Responses: ``POST /v1/responses`` (plain and streaming SSE; the OpenAI
  Agents SDK uses it);
* Anthropic Messages: ``POST /v1/messages`` (plain and streaming SSE).

Point a client at it::

    openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test")
    anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="sk-ant-test")

Replies are deterministic. Each request takes the next scripted :class:`Reply`
(``server.script(...)``); when none is queued, the default responder answers
``"echo: <last user text>"`` with usage figures derived from the text lengths.
A reply may be an error (``Reply.fail(429)``), carry a delay (``delay=2.0``) or
tool calls (``Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})])``).
Every request is logged (``server.requests``, ``server.count(api=...)``) before
its reply is chosen, so tests can assert how many requests a run made.

API (kept stable; other test helpers build on it): :class:`FakeLlmServer`,
:class:`Reply`, :class:`ToolCall`, :class:`RecordedRequest`, and the pytest
fixture :func:`llm_server` (a started server, stopped after the test).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

#: The protocols the server speaks, by request path.
CHAT = "chat"
RESPONSES = "responses"
MESSAGES = "messages"
_ROUTES = {
    "/v1/chat/completions": CHAT,
    "/chat/completions": CHAT,
    "/v1/responses": RESPONSES,
    "/responses": RESPONSES,
    "/v1/messages": MESSAGES,
    "/messages": MESSAGES,
}


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model "makes" in a reply."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    #: The provider's id for the call; generated (``call_1``…) when None.
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """One scripted reply: text and/or tool calls, or an HTTP error.

    Token counts default to figures derived from the prompt and reply lengths
    (deterministic); set them to pin exact usage.
    """

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] | list[ToolCall] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    #: Seconds to wait before answering (before the first byte of a stream too).
    delay: float = 0.0
    #: An HTTP error status (429, 500, 401, ...) instead of a reply.
    status: int = 200
    error_message: str = ""
    #: Extra response headers (errors get ``retry-after-ms: 5`` unless given).
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def fail(cls, status: int, message: str = "", *, delay: float = 0.0, **headers: str) -> Reply:
        """An error reply: ``Reply.fail(429)``, ``Reply.fail(500, "boom")``."""
        return cls(status=status, error_message=message, delay=delay, headers=dict(headers))


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    api: str  # CHAT, RESPONSES, MESSAGES, or "unknown"
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    #: Wall-clock time it arrived.
    at: float

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def api_key(self) -> str | None:
        """The credential sent: ``Authorization: Bearer`` (OpenAI) or ``x-api-key``."""
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:]
        return self.headers.get("x-api-key")


Responder = Callable[[RecordedRequest], Reply]


class FakeLlmServer:
    """A threaded HTTP server on 127.0.0.1 (a free port unless one is given)."""

    def __init__(self, port: int = 0) -> None:
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        #: Answers requests when no scripted reply is queued.
        self.responder: Responder = default_reply
        self._ids = itertools.count(1)
        #: Set by stop(): cuts reply delays short so handler threads end promptly.
        self._stopping = threading.Event()
        handler = type("_Handler", (_Handler,), {"fake": self})
        self._httpd = _Server(("127.0.0.1", port), handler)
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> FakeLlmServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # a quick stop() at teardown
            name="fake-llm-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.hang_up()
        self._httpd.server_close()  # joins the handler threads (block_on_close)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeLlmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``openai.OpenAI`` (the SDK appends ``/chat/completions``)."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """``base_url`` for ``anthropic.Anthropic`` (the SDK appends ``/v1/messages``)."""
        return self.base_url

    # -- scripting ----------------------------------------------------------------

    def script(self, *replies: Reply | str) -> None:
        """Queue replies, used in order by the next requests (a str is a text reply)."""
        with self._lock:
            for reply in replies:
                self._queue.append(Reply(text=reply) if isinstance(reply, str) else reply)

    def reset(self) -> None:
        """Forget queued replies and logged requests; restore the default responder."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.responder = default_reply

    def count(self, api: str | None = None) -> int:
        """Requests received so far (of one protocol when ``api`` is given)."""
        with self._lock:
            return sum(1 for r in self.requests if api is None or r.api == api)

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        with self._lock:
            return len(self._queue)

    # -- used by the handler ------------------------------------------------------

    def _take(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._queue:
                return self._queue.popleft()
        return self.responder(request)

    def _next_id(self) -> int:
        return next(self._ids)


# -- default replies -------------------------------------------------------------------


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user turn of a request, in any of the three protocols."""
    items: list[Any] = []
    if isinstance(body.get("messages"), list):
        items = body["messages"]
    elif isinstance(body.get("input"), str):
        return str(body["input"])
    elif isinstance(body.get("input"), list):
        items = body["input"]
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role", "user") == "user":
            return _text_of(item.get("content"))
    return ""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return ""


def default_reply(request: RecordedRequest) -> Reply:
    return Reply(text=f"echo: {last_user_text(request.body)}")


def _prompt_tokens(body: dict[str, Any]) -> int:
    # Deterministic stand-in for a tokenizer: a token per 4 characters of the request.
    text = json.dumps(body.get("messages") or body.get("input") or "", sort_keys=True)
    system = body.get("system") or body.get("instructions") or ""
    return max(1, (len(text) + len(json.dumps(system))) // 4)


def _usage(reply: Reply, body: dict[str, Any]) -> tuple[int, int]:
    prompt = reply.input_tokens if reply.input_tokens is not None else _prompt_tokens(body)
    if reply.output_tokens is not None:
        return prompt, reply.output_tokens
    produced = len(reply.text or "") + sum(len(json.dumps(t.arguments)) for t in reply.tool_calls)
    return prompt, max(1, produced // 4)


def _chunks(text: str, size: int = 8) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


# -- the HTTP handler ------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    # Handler threads are joined at server_close(), so none outlives its test.
    daemon_threads = False
    block_on_close = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: set[Any] = set()
        self._open_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def hang_up(self) -> None:
        """Close every open connection: a client's idle keep-alive would block the join."""
        import socket

        with self._open_lock:
            for request in list(self._open):
                with contextlib.suppress(OSError):
                    request.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) closes the socket under a reply.
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLlmServer
    protocol_version = "HTTP/1.1"
    #: An idle keep-alive connection is dropped after this many seconds (a safety net).
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return

    def do_GET(self) -> None:
        self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        path = self.path.split("?", 1)[0]
        api = _ROUTES.get(path, "unknown")
        request = RecordedRequest(
            api=api,
            method="POST",
            path=path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            at=time.time(),
        )
        reply = self.fake._take(request)
        if reply.delay:
            self.fake._stopping.wait(reply.delay)
        if api == "unknown":
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        if reply.status != 200:
            self._error(api, reply)
            return
        model = request.model or "fake-model"
        n = self.fake._next_id()
        if api == CHAT:
            if request.stream:
                self._sse(_chat_stream(reply, body, model, n), named=False)
            else:
                self._json(200, _chat_completion(reply, body, model, n))
        elif api == RESPONSES:
            if request.stream:
                self._sse(_responses_stream(reply, body, model, n), named=True)
            else:
                self._json(200, _response_object(reply, body, model, n))
        elif request.stream:
            self._sse(_messages_stream(reply, body, model, n), named=True)
        else:
            self._json(200, _message_object(reply, body, model, n))

    # -- writing ------------------------------------------------------------------

    def _json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, api: str, reply: Reply) -> None:
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            429: "rate_limit_error",
            529: "overloaded_error",
        }.get(reply.status, "api_error")
        message = reply.error_message or f"fake {kind} (HTTP {reply.status})"
        payload: dict[str, Any]
        if api == MESSAGES:
            payload = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            payload = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
        headers = {"retry-after-ms": "5", **reply.headers}
        self._json(reply.status, payload, headers)

    def _sse(self, events: Iterator[tuple[str, dict[str, Any] | str]], *, named: bool) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        for event, data in events:
            text = data if isinstance(data, str) else json.dumps(data)
            frame = (f"event: {event}\n" if named else "") + f"data: {text}\n\n"
            self.wfile.write(frame.encode())
            self.wfile.flush()


# -- OpenAI Chat Completions ----------------------------------------------------------


def _chat_tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id or f"call_{i}",
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
        }
        for i, call in enumerate(reply.tool_calls, start=1)
    ]


def _chat_completion(reply: Reply, body: dict[str, Any], model: str, n: int) -> dict[str, Any]:
    prompt, completion = _usage(reply, body)
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = _chat_tool_calls(reply)
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _chat_stream(
    reply: Reply, body: dict[str, Any], model: str, n: int
) -> Iterator[tuple[str, dict[str, Any] | str]]:
    base = {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    yield "", chunk({"role": "assistant", "content": ""})
    for piece in _chunks(reply.text or ""):
        yield "", chunk({"content": piece})
    for index, call in enumerate(_chat_tool_calls(reply)):
        yield (
            "",
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            ),
        )
        for piece in _chunks(call["function"]["arguments"]):
            yield "", chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield "", chunk({}, "tool_calls" if reply.tool_calls else "stop")
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        prompt, completion = _usage(reply, body)
        yield (
            "",
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            },
        )
    yield "", "[DONE]"


# -- OpenAI Responses -----------------------------------------------------------------


def _responses_items(reply: Reply, n: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if reply.text is not None:
        items.append(
            {
                "type": "message",
                "id": f"msg_{n}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
            }
        )
    for i, call in enumerate(reply.tool_calls, start=1):
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{n}_{i}",
                "call_id": call.id or f"call_{i}",
                "name": call.name,
                "arguments": json.dumps(call.arguments),
                "status": "completed",
            }
        )
    return items


def _response_object(
    reply: Reply,
    body: dict[str, Any],
    model: str,
    n: int,
    *,
    status: str = "completed",
    output: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    prompt, completion = _usage(reply, body)
    return {
        "id": f"resp_{n}",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "model": model,
        "output": _responses_items(reply, n) if output is None else output,
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "temperature": body.get("temperature", 1.0),
        "top_p": 1.0,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": {},
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        },
    }


def _responses_stream(
    reply: Reply, body: dict[str, Any], model: str, n: int
) -> Iterator[tuple[str, dict[str, Any] | str]]:
    seq = itertools.count()

    def event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **fields}

    started = _response_object(reply, body, model, n, status="in_progress", output=[])
    started["usage"] = None
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    for index, item in enumerate(_responses_items(reply, n)):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            empty = {"type": "output_text", "text": "", "annotations": []}
            yield event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=empty,
            )
            for piece in _chunks(text):
                yield event(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=piece,
                    logprobs=[],
                )
            yield event(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            )
            yield event(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=item["content"][0],
            )
        else:
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "arguments": "", "status": "in_progress"},
            )
            for piece in _chunks(item["arguments"]):
                yield event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=piece,
                )
            yield event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            )
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.completed", response=_response_object(reply, body, model, n))


# -- Anthropic Messages ---------------------------------------------------------------


def _message_blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text is not None:
        blocks.append({"type": "text", "text": reply.text})
    for i, call in enumerate(reply.tool_calls, start=1):
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id or f"toolu_{i}",
                "name": call.name,
                "input": call.arguments,
            }
        )
    return blocks


def _message_object(reply: Reply, body: dict[str, Any], model: str, n: int) -> dict[str, Any]:
    prompt, completion = _usage(reply, body)
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _message_blocks(reply),
        "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


def _messages_stream(
    reply: Reply, body: dict[str, Any], model: str, n: int
) -> Iterator[tuple[str, dict[str, Any] | str]]:
    prompt, completion = _usage(reply, body)
    message = {**_message_object(reply, body, model, n), "content": [], "stop_reason": None}
    message["usage"] = {"input_tokens": prompt, "output_tokens": 1}
    yield "message_start", {"type": "message_start", "message": message}
    for index, block in enumerate(_message_blocks(reply)):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": start,
                },
            )
            yield "ping", {"type": "ping"}
            for piece in _chunks(block["text"]):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
        else:
            start = {**block, "input": {}}
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": start,
                },
            )
            for piece in _chunks(json.dumps(block["input"])):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
                "stop_sequence": None,
            },
            "usage": {"output_tokens": completion},
        },
    )
    yield "message_stop", {"type": "message_stop"}


# -- pytest fixture --------------------------------------------------------------------


@pytest.fixture
def llm_server() -> Iterator[FakeLlmServer]:
    """A started fake LLM server on a free loopback port (stopped after the test)."""
    server = FakeLlmServer().start()
    try:
        yield server
    finally:
        server.stop()
