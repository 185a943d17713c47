"""Links to the dashboard's comparison of executions (0.21's ``build_compare_url*``).

The dashboard (served by ``kitaru server``) compares two executions side by side at
``<server>/#/compare/<a>/<b>``; with more than two, the page opens on the first two
and links the first to each of the others (``?more=<id>,<id>``). Without a server
there is no page to link to: every helper then gives ``None`` (or no links), as 0.21
did without a UI. ``flow_id`` and ``flow_version`` are 0.21's arguments: accepted,
and ``flow_id=None`` gives ``None`` as it did, but the page needs neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from kitaru.errors import KitaruUsageError

if TYPE_CHECKING:
    from kitaru.client import KitaruClient

#: 0.21's default for ``flow_version`` (kept for signatures; the page has no versions).
DEFAULT_COMPARE_FLOW_VERSION = "local"


def build_compare_url_for_executions(
    *,
    exec_ids: Sequence[str],
    server_url: str | None = None,
    flow_id: str | None = None,
    flow_version: str = DEFAULT_COMPARE_FLOW_VERSION,
    **_ignored: Any,
) -> str | None:
    """The dashboard link comparing ``exec_ids`` (two or more), or None without a server,
    a flow or two ids."""
    return None if flow_id is None else link(server_url, _ids(exec_ids))


def link(server_url: str | None, exec_ids: Sequence[str]) -> str | None:
    """``<server>/#/compare/<a>/<b>[?more=...]``; None without a server or two ids."""
    if len(exec_ids) < 2 or not server_url:
        return None
    first, second, *more = (quote(i, safe="") for i in exec_ids)
    found = f"{server_url.rstrip('/')}/#/compare/{first}/{second}"
    return found + (f"?more={','.join(more)}" if more else "")


def build_compare_url(
    *,
    original_exec_id: str,
    replay_exec_id: str,
    server_url: str | None = None,
    flow_id: str | None = None,
    flow_version: str = DEFAULT_COMPARE_FLOW_VERSION,
    **_ignored: Any,
) -> str | None:
    """The dashboard link comparing an execution with one replay of it (or None)."""
    return build_compare_url_for_executions(
        exec_ids=[original_exec_id, replay_exec_id], server_url=server_url, flow_id=flow_id
    )


def build_compare_urls(
    *,
    original_exec_id: str,
    replay_exec_ids: Sequence[str],
    server_url: str | None = None,
    flow_id: str | None = None,
    flow_version: str = DEFAULT_COMPARE_FLOW_VERSION,
    **_ignored: Any,
) -> list[str]:
    """One link per replay, each comparing it with the original (none without a server)."""
    links = (
        build_compare_url(
            original_exec_id=original_exec_id,
            replay_exec_id=replay,
            server_url=server_url,
            flow_id=flow_id,
        )
        for replay in _ids(replay_exec_ids)
    )
    return [link for link in links if link is not None]


def compare_url_for_executions(
    exec_ids: Sequence[str], *, client: KitaruClient | None = None
) -> str | None:
    """The dashboard link comparing ``exec_ids`` on the server ``client`` talks to (by
    default this process's connection); None when it uses a store directly."""
    ids = _ids(exec_ids)
    if len(ids) < 2:
        return None
    if client is None:
        from kitaru.client import KitaruClient

        client = KitaruClient()
    server = server_url_of(client)
    if server is None:
        return None
    client.executions.get(ids[0])  # an unknown id is a KitaruBackendError, as in 0.21
    return link(server, ids)


def server_url_of(client: KitaruClient) -> str | None:
    """The server (and so the dashboard) ``client`` talks to; None for a direct store."""
    connection = getattr(client, "connection", None)
    return None if connection is None else str(connection.url)


def _ids(exec_ids: Sequence[str]) -> list[str]:
    if isinstance(exec_ids, str) or not isinstance(exec_ids, Sequence):
        raise KitaruUsageError(
            f"Execution ids must be a list of strings, not {type(exec_ids).__name__}."
        )
    return [str(i).strip() for i in exec_ids if str(i).strip()]


__all__ = [
    "DEFAULT_COMPARE_FLOW_VERSION",
    "build_compare_url",
    "build_compare_url_for_executions",
    "build_compare_urls",
    "compare_url_for_executions",
    "link",
    "server_url_of",
]
