"""The store contract over HTTP: ``KITARU_STORE_URL=kitaru+http://HOST:PORT``.

Every method of the store contract is one request to the server's
``/api/v1/store/{method}`` (one per checkpoint on the hot path). The API key is
``KITARU_AUTH_TOKEN``, else the one ``kitaru login`` saved for that server.
Artifact bytes above the inline limit go through the server too (see
``_remote_blobs``), unless ``KITARU_ARTIFACTS_ROOT`` names a shared root to write
to directly (the one the server uses: a shared directory or bucket).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from kitaru._store import _wire
from kitaru._store.records import RecordedCall
from kitaru.client._remote import Session
from kitaru.client._remote_config import (
    ENV_AUTH_TOKEN,
    Connection,
    current_connection,
    normalize_url,
)
from kitaru.errors import KitaruBackendError, KitaruFeatureNotAvailableError, KitaruUsageError

if TYPE_CHECKING:
    from kitaru._store.records_extra import LogRecord

SCHEMES = ("kitaru+http://", "kitaru+https://")
_PROTOCOL_HEADERS = {_wire.PROTOCOL_HEADER: str(_wire.PROTOCOL)}


def is_http_store(url: str) -> bool:
    return url.startswith(SCHEMES)


def runner_env(store: object) -> dict[str, str]:
    """What a child process (isolated call, Ray actor) needs to record through ``store``.

    Empty for a database store. The key travels in the child's own environment or
    Kitaru's actor payload, never in Ray's ``env_vars`` (Ray's agent logs print those).
    """
    if isinstance(store, HttpStore):
        return {ENV_AUTH_TOKEN: store.api_key}
    return {}


def server_url(url: str) -> str:
    return normalize_url(url.removeprefix("kitaru+"))


def api_key(server: str) -> str:
    token = os.environ.get(ENV_AUTH_TOKEN, "").strip()
    if token:
        return token
    try:
        saved = current_connection()
    except KitaruUsageError:
        saved = None
    if saved is not None and saved.url == server:
        return saved.api_key
    raise KitaruUsageError(
        f"The store kitaru+{server} is a Kitaru server: set {ENV_AUTH_TOKEN} to a read-write "
        f"API key, or `kitaru login {server} --api-key KEY`."
    )


class HttpStore:
    """A store whose every contract method is a call to a Kitaru server."""

    def __init__(self, url: str) -> None:
        server = server_url(url)
        self.url = f"kitaru+{server}"
        self.dialect = "http"
        self._session = Session(Connection(server, api_key(server), "store URL"))
        self._protocol_checked = False
        self._log_part_bytes = _LOG_PART_BYTES  # see insert_logs

    def __repr__(self) -> str:
        return f"HttpStore({self.url!r})"

    @property
    def api_key(self) -> str:
        """The key this store uses: handed to the processes that run its executions."""
        return self._session.connection.api_key

    def _call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not self._protocol_checked:
            self._check_protocol()
        body = {"positional": _wire.encode(list(args)), "keywords": _wire.encode(kwargs)}
        answer = self._session.store_request(
            "POST", f"/store/{method}", json=body, headers=_PROTOCOL_HEADERS
        )
        return _wire.decode(answer["result"])

    def _check_protocol(self) -> None:
        """Refuse a server of another store protocol before the first store call (once)."""
        answer = self._session.get("/version")
        found = answer.get("protocol", 1) if isinstance(answer, dict) else None
        # Only the number itself: not "1", true or 1.0.
        if type(found) is not int or found != _wire.PROTOCOL:
            version = answer.get("version") if isinstance(answer, dict) else None
            raise KitaruBackendError(
                _wire.server_speaks_other(self._session.connection.url, found, version or "?")
            )
        self._protocol_checked = True
        cap = answer.get("max_body_bytes")
        if type(cap) is int and cap > 0:  # an older server does not say: the default part
            self._log_part_bytes = min(_LOG_PART_BYTES, cap // 2)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in _wire.METHODS:
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, args, kwargs)

        method.__name__ = name
        return method

    def recorded_calls(self, exec_id: str) -> list[RecordedCall]:
        """``Store.recorded_calls``: its tuples come over the wire as plain tuples.

        A server older than this method answers that it has no such store method: a
        resumed run then reads the full records instead (slower, the same calls).
        """
        try:
            rows = self._call("recorded_calls", (exec_id,), {})
        except KitaruUsageError as exc:
            if "'recorded_calls' is not a store method" not in str(exc):
                raise
            calls = sorted(self._call("calls", (exec_id,), {}), key=lambda call: call.seq)
            return [RecordedCall.of(call) for call in calls]
        return [RecordedCall(*row) for row in rows]  # an older server sends no crc32

    def insert_logs(self, records: Sequence[LogRecord]) -> list[tuple[LogRecord, Exception]]:
        """``Store.insert_logs`` in requests the server takes: a busy checkpoint's batch of
        lines can outgrow the server's body limit (1 MiB by default), which would refuse
        it whole; each part holds at most half of that limit (and 256 KiB) of lines."""
        if not self._protocol_checked:
            self._check_protocol()  # learns the server's body limit
        refused: list[tuple[LogRecord, Exception]] = []
        for part in _parts(records, self._log_part_bytes):
            refused.extend(self._call("insert_logs", (part,), {}) or ())
        return refused

    def read(self) -> Any:
        raise KitaruFeatureNotAvailableError(
            f"{self!r} has no SQL access: this operation needs the store itself."
        )

    write = read

    def dispose(self) -> None:
        self._session.close()


#: About this many bytes of log lines per request (well under a server's default limit).
_LOG_PART_BYTES = 256 * 1024
#: What each line adds to its request besides its text (ids, time, names, JSON).
_LOG_LINE_OVERHEAD = 200


def _cost(record: LogRecord, text: str) -> int:
    # As JSON: escapes (a non-ASCII character is up to 12 bytes) count too.
    return len(json.dumps(text)) + len(record.logger or "") + _LOG_LINE_OVERHEAD


def _parts(records: Sequence[LogRecord], budget: int) -> Iterator[list[LogRecord]]:
    part: list[LogRecord] = []
    size = 0
    for whole in records:
        for record in _pieces(whole, budget):
            cost = _cost(record, record.message)
            if part and size + cost > budget:
                yield part
                part, size = [], 0
            part.append(record)
            size += cost
    if part:
        yield part


def _pieces(record: LogRecord, budget: int) -> list[LogRecord]:
    """``record``, or consecutive lines of its text each under ``budget`` when it alone
    is over it: one huge ``print`` would be refused whole by the server's body limit
    (and lost); its pieces keep its time, stream and call, in order."""
    text = record.message
    if _cost(record, text) <= budget:
        return [record]
    room = max(1, budget - _cost(record, ""))  # bytes of escaped text a piece may take
    pieces: list[str] = []
    start = 0
    while start < len(text):
        size = min(len(text) - start, room)  # a character is at least one byte
        while size > 1:
            escaped = len(json.dumps(text[start : start + size])) - 2
            if escaped <= room:
                break
            size = max(1, size * room // escaped)  # shrinks: escaped > room
        pieces.append(text[start : start + size])
        start += size
    return [dataclasses.replace(record, message=piece) for piece in pieces]
