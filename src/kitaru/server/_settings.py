"""The server's own settings, read from the environment when the app is built.

``kitaru server start`` sets these for the uvicorn process (and its workers):
``KITARU_SERVER_MAX_BODY_BYTES`` (request body cap, default 1 MiB),
``KITARU_SERVER_MAX_PAGE_SIZE`` (largest ``limit=``, default 500),
``KITARU_SERVER_CORS_ORIGINS`` (comma-separated origins; CORS is off when unset),
``KITARU_SERVER_MAX_BLOB_BYTES`` (artifact upload cap of runners, default 256 MiB),
``KITARU_SERVER_REQUEST_TIMEOUT`` (seconds until a request must have started its
answer, else 504; default 60; streams and downloads may go on after that).
The store and artifact root are Kitaru's usual ``KITARU_STORE_URL`` and
``KITARU_ARTIFACTS_ROOT``; the largest answer to a wait is Kitaru's usual
``KITARU_MAX_WAIT_INPUT_BYTES`` (the body cap of the routes that take answers grows
to hold it, see ``ServerSettings.input_body_bytes``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from kitaru._limits import DEFAULT_MAX_WAIT_INPUT_BYTES, max_wait_input_bytes
from kitaru.errors import KitaruUsageError

ENV_MAX_BODY = "KITARU_SERVER_MAX_BODY_BYTES"
ENV_MAX_PAGE = "KITARU_SERVER_MAX_PAGE_SIZE"
ENV_CORS = "KITARU_SERVER_CORS_ORIGINS"
ENV_MAX_BLOB = "KITARU_SERVER_MAX_BLOB_BYTES"
ENV_REQUEST_TIMEOUT = "KITARU_SERVER_REQUEST_TIMEOUT"
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_MAX_PAGE = 500
DEFAULT_PAGE = 50
DEFAULT_MAX_BLOB = 256 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 60
#: The largest id the stores' ``INTEGER`` id columns hold (32-bit on PostgreSQL): log
#: line ids, event positions. A larger one in a request can match nothing and would
#: make PostgreSQL fail the query, so it is refused as a usage error.
MAX_ROW_ID = 2**31 - 1
#: An answer's JSON is measured unescaped (UTF-8); a client may send it escaped
#: (``\u00e9`` for ``é``, ``\ud83d\ude00`` for an emoji): at most this many times larger.
_ESCAPE_FACTOR = 3
#: Room for the rest of an input body (``{"wait": ..., "value": ...}``, whitespace).
_INPUT_ENVELOPE = 64 * 1024


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise KitaruUsageError(f"{name} must be a whole number of 1 or more, got {raw!r}.")
    return value


@dataclass(frozen=True)
class ServerSettings:
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_page_size: int = DEFAULT_MAX_PAGE
    cors_origins: tuple[str, ...] = ()
    max_blob_bytes: int = DEFAULT_MAX_BLOB
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    #: ``KITARU_MAX_WAIT_INPUT_BYTES`` where the server runs (None: unlimited).
    max_wait_input_bytes: int | None = DEFAULT_MAX_WAIT_INPUT_BYTES

    @property
    def input_body_bytes(self) -> int:
        """The body cap of the routes that answer waits: room for the largest answer the
        store accepts, however the client escapes its JSON, so that such an answer is
        never refused for the body cap (nor one over it, with the cap's error instead of
        the wait limit's)."""
        if self.max_wait_input_bytes is None:  # unlimited answers: the general cap
            return self.max_body_bytes
        room = _ESCAPE_FACTOR * self.max_wait_input_bytes + _INPUT_ENVELOPE
        return max(self.max_body_bytes, room)

    @classmethod
    def from_env(cls) -> ServerSettings:
        origins = tuple(o.strip() for o in os.environ.get(ENV_CORS, "").split(",") if o.strip())
        return cls(
            max_body_bytes=_positive_int(ENV_MAX_BODY, DEFAULT_MAX_BODY),
            max_page_size=_positive_int(ENV_MAX_PAGE, DEFAULT_MAX_PAGE),
            cors_origins=origins,
            max_blob_bytes=_positive_int(ENV_MAX_BLOB, DEFAULT_MAX_BLOB),
            request_timeout=_positive_int(ENV_REQUEST_TIMEOUT, DEFAULT_REQUEST_TIMEOUT),
            max_wait_input_bytes=max_wait_input_bytes(),
        )
