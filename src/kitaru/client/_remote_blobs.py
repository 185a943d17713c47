"""Artifact bytes through a Kitaru server: the artifact root ``kitaru+http://HOST:PORT``.

A process recording through a server without a shared artifact root of its own
(``KITARU_ARTIFACTS_ROOT``) uploads values above the inline limit to the
server, which writes them to *its* artifact root and answers with the URI; a
resume downloads them again. The server checks the hash and that the URI lies
under its root, as a local blob store does.
"""

from __future__ import annotations

import hashlib

from kitaru.client._remote import Session
from kitaru.client._remote_config import Connection
from kitaru.client._remote_store import api_key, server_url
from kitaru.errors import KitaruFeatureNotAvailableError


class ServerBlobs:
    """The blob-store operations a runner needs, as requests to the server's store API."""

    def __init__(self, root: str) -> None:
        server = server_url(root)
        self._root = f"kitaru+{server}"
        self._session = Session(Connection(server, api_key(server), "artifact root"))

    @property
    def root(self) -> str:
        return self._root

    def __repr__(self) -> str:
        return f"ServerBlobs({self._root!r})"

    def put(self, data: bytes) -> tuple[str, str]:
        """Upload ``data``; its (uri, sha256) in the server's artifact root."""
        answer = self._session.store_request(
            "PUT",
            "/store/blobs",
            content=data,
            headers={
                "Content-Type": "application/octet-stream",
                "X-Kitaru-Sha256": hashlib.sha256(data).hexdigest(),
            },
        )
        return str(answer["uri"]), str(answer["sha256"])

    def get(self, uri: str, sha256: str) -> bytes:
        data: bytes = self._session.request(
            "GET", "/store/blobs", params={"uri": uri, "sha256": sha256}, raw=True
        )
        return data

    def check_uri(self, uri: str, action: str = "read") -> None:
        """The server confines URIs to its root on every request."""

    def delete(self, uri: str) -> None:
        raise KitaruFeatureNotAvailableError(
            f"Blob {uri} lives on the Kitaru server at {self._root}: delete the execution "
            "through the server (KitaruClient connected to it, or `kitaru executions delete`)."
        )

    def close(self) -> None:
        self._session.close()
