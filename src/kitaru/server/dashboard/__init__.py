"""The web dashboard: static pages served at ``/`` plus the API routes only it needs.

The pages are plain ES modules and CSS shipped inside this package (no build step,
no CDN): ``static/``. They talk to the server through ``/api/v1`` with the API key
the user typed, kept in the tab's ``sessionStorage`` and sent as a Bearer header.
"""

from __future__ import annotations

from kitaru.server.dashboard._api import router
from kitaru.server.dashboard._pages import install

__all__ = ["install", "router"]
