"""The FastAPI application: routes under ``/api/v1``, errors, limits, optional CORS."""

from __future__ import annotations

import os
import re

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from kitaru._version import __version__
from kitaru.client._remote_config import use_store_only
from kitaru.server import (
    _analysis,
    _artifacts,
    _errors,
    _executions,
    _schedules,
    _store_api,
    dashboard,
)
from kitaru.server._limits import BodyCap, BodySizeLimit, RequestTimeout
from kitaru.server._settings import ServerSettings

API_PREFIX = "/api/v1"
#: A uvicorn worker process checks that this process (the server) is still its parent.
_ENV_PARENT = "KITARU_SERVER_PROCESS"


def _die_with_the_server() -> None:
    """In a uvicorn worker process (``--workers N``): end when the server process that
    started it dies, even by SIGKILL (Linux), rather than keep serving its port with
    no one to stop it. SIGTERM: uvicorn shuts the worker down as on ``kitaru server
    stop``. The server itself (``--workers 1`` serves in it) is no such child."""
    import multiprocessing
    import signal

    from kitaru._parent_death import die_with_parent

    parent = multiprocessing.parent_process()  # None but in a multiprocessing child
    if parent is None or parent.pid is None:
        return
    os.environ[_ENV_PARENT] = str(parent.pid)
    die_with_parent(_ENV_PARENT, signal.SIGTERM)


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The server app; settings default to the environment (see ``_settings``)."""
    settings = settings or ServerSettings.from_env()
    _die_with_the_server()
    # The server never loads a pickled value: whatever a request or the store holds.
    os.environ["KITARU_ALLOW_PICKLE"] = "0"
    # It reads its store itself, whatever login or KITARU_SERVER_URL this machine has.
    use_store_only()
    app = FastAPI(
        title="Kitaru server",
        version=__version__,
        description=(
            "Executions, waits, artifacts and control of a Kitaru store over HTTP. Every "
            "route that reads or changes data needs 'Authorization: Bearer <API key>'; "
            "/api/v1/health, this document and the Swagger UI are served without one."
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    _errors.install(app)
    app.include_router(_executions.router, prefix=API_PREFIX)
    app.include_router(_analysis.router, prefix=API_PREFIX)
    app.include_router(_executions.replays, prefix=API_PREFIX)
    app.include_router(_artifacts.router, prefix=API_PREFIX)
    app.include_router(_store_api.router, prefix=API_PREFIX)
    app.include_router(_schedules.router, prefix=API_PREFIX)
    # The dashboard: its API routes, then its pages at / (static files of the package).
    app.include_router(dashboard.router, prefix=API_PREFIX)
    dashboard.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    input_route = re.compile(re.escape(f"{API_PREFIX}/executions/") + r"[^/]+/input")
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        # An answer holding NaN is refused by its route, naming the wait and the place.
        judged=[input_route],
        caps=[
            BodyCap(
                re.compile(re.escape(f"{API_PREFIX}/store/blobs")),
                settings.max_blob_bytes,
                message="The request body is larger than this server accepts ({limit} bytes, "
                "KITARU_SERVER_MAX_BLOB_BYTES).",
            ),
            # An answer to a wait (the body cap leaves room for any answer under the
            # wait limit, see ServerSettings.input_body_bytes). Refused before the route
            # runs, so without knowing whether the execution waits at all: a body-size
            # error that claims nothing about the execution.
            BodyCap(
                input_route,
                settings.input_body_bytes,
                message="The request body is larger than this server accepts for an answer "
                "to a wait ({limit} bytes: room for the largest answer "
                "KITARU_MAX_WAIT_INPUT_BYTES allows where the server runs); nothing was "
                "recorded. Answer with a reference (a file path or URL) instead of the data.",
            ),
        ],
    )
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout)  # outermost
    return app
