"""The FastAPI application: routes under ``/api/v1``, errors, limits, optional CORS."""

from __future__ import annotations

import os

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
from kitaru.server._limits import BodySizeLimit, RequestTimeout
from kitaru.server._settings import ServerSettings

API_PREFIX = "/api/v1"


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The server app; settings default to the environment (see ``_settings``)."""
    settings = settings or ServerSettings.from_env()
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
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        per_path={
            f"{API_PREFIX}/store/blobs": (settings.max_blob_bytes, "KITARU_SERVER_MAX_BLOB_BYTES")
        },
    )
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout)  # outermost
    return app
