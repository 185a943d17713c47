"""Serve the dashboard's files: ``/`` is the page, ``/dashboard/...`` its modules and CSS.

Every route of the page is a ``#/...`` fragment, so the server only ever sends
``index.html`` for ``/``; the fragment (and so any id in it) never reaches the server.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent / "static"
#: The page loads only its own files; nothing inline, nothing from elsewhere.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def install(app: FastAPI) -> None:
    """Add ``/`` and ``/dashboard/`` (static files) to the app, outside the API schema."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=_HEADERS)

    @app.get("/dashboard", include_in_schema=False)
    def dashboard_root() -> RedirectResponse:
        return RedirectResponse("/")

    app.mount("/dashboard", _Static(directory=STATIC), name="dashboard")


class _Static(StaticFiles):
    """Static files with the page's security headers and revalidation on each load."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        return response
