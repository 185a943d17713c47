"""The Kitaru server: a REST API (FastAPI) over a Kitaru store, with API-key auth.

Install with the ``server`` extra. ``kitaru server start`` runs it; code can
build the app with :func:`create_app` (``uvicorn --factory kitaru.server:create_app``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitaru.server._app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from kitaru.server._app import create_app

        return create_app
    raise AttributeError(f"module 'kitaru.server' has no attribute {name!r}")


__all__ = ["create_app"]
