"""The server's own settings, read from the environment when the app is built.

``kitaru server start`` sets these for the uvicorn process (and its workers):
``KITARU_SERVER_MAX_BODY_BYTES`` (request body cap, default 1 MiB),
``KITARU_SERVER_MAX_PAGE_SIZE`` (largest ``limit=``, default 500),
``KITARU_SERVER_CORS_ORIGINS`` (comma-separated origins; CORS is off when unset),
``KITARU_SERVER_MAX_BLOB_BYTES`` (artifact upload cap of runners, default 256 MiB),
``KITARU_SERVER_REQUEST_TIMEOUT`` (seconds until a request must have started its
answer, else 504; default 60; streams and downloads may go on after that).
The store and artifact root are Kitaru's usual ``KITARU_STORE_URL`` and
``KITARU_ARTIFACTS_ROOT``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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

    @classmethod
    def from_env(cls) -> ServerSettings:
        origins = tuple(o.strip() for o in os.environ.get(ENV_CORS, "").split(",") if o.strip())
        return cls(
            max_body_bytes=_positive_int(ENV_MAX_BODY, DEFAULT_MAX_BODY),
            max_page_size=_positive_int(ENV_MAX_PAGE, DEFAULT_MAX_PAGE),
            cors_origins=origins,
            max_blob_bytes=_positive_int(ENV_MAX_BLOB, DEFAULT_MAX_BLOB),
            request_timeout=_positive_int(ENV_REQUEST_TIMEOUT, DEFAULT_REQUEST_TIMEOUT),
        )
