"""Talking to a Kitaru server: one keep-alive httpx session, errors as Kitaru errors.

An error answer carries ``{"error": {"type", "message"}}``; the same class a
local call raises is raised here (any unknown type becomes ``KitaruError``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from kitaru import errors
from kitaru.client._remote_config import Connection
from kitaru.errors import (
    KitaruAuthenticationError,
    KitaruBackendError,
    KitaruError,
    KitaruPermissionError,
)

API = "/api/v1"

logger = logging.getLogger(__name__)

#: Backoff between attempts to connect to a server that is down (see Session.request).
_FIRST_PAUSE, _MAX_PAUSE = 0.1, 2.0


def _ride_out_seconds() -> float:
    """How long a runner's store call waits for an unreachable server: a lease's length."""
    from kitaru._runtime.leases import lease_seconds

    return lease_seconds()


_EXTRA: dict[str, type[BaseException]] = {
    "KitaruAuthenticationError": KitaruAuthenticationError,
    "KitaruPermissionError": KitaruPermissionError,
    "LookupError": LookupError,
}


def error_from(status: int, body: Any) -> BaseException:
    if not _EXTRA.get("StaleOwnerError"):
        from kitaru._store import StaleOwnerError

        _EXTRA["StaleOwnerError"] = StaleOwnerError
    info = body.get("error") if isinstance(body, dict) else None
    if not isinstance(info, dict):
        return KitaruBackendError(f"The Kitaru server answered HTTP {status} without details.")
    name, message = str(info.get("type", "")), str(info.get("message", ""))
    cls = _EXTRA.get(name) or getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = KitaruError
    if issubclass(cls, errors.KitaruTimeoutError) or issubclass(cls, errors.KitaruExecutionError):
        cls = errors.KitaruStateError if issubclass(cls, errors.KitaruStateError) else KitaruError
    if issubclass(cls, errors.KitaruWaitValidationError):
        details = info.get("details")
        error: BaseException = cls(message, details=details if isinstance(details, list) else None)
    else:
        error = cls(message)
    error.http_status = status  # type: ignore[attr-defined]  # see Session.store_request
    return error


class Session:
    """HTTP calls to one server, shared by a client's threads (httpx pools connections)."""

    def __init__(self, connection: Connection) -> None:
        try:
            import httpx
        except ImportError:
            from kitaru.errors import KitaruUsageError

            raise KitaruUsageError(
                f"Talking to the Kitaru server at {connection.url} needs httpx: install "
                "Kitaru with the 'server' extra from this repository (pip install -e "
                "'.[server]'), or `kitaru logout` to use the store directly."
            ) from None

        self.connection = connection
        #: The server's ``/version`` answer (page cap, body caps): None until asked.
        self._info: dict[str, Any] | None = None
        #: Whether the server has answered this session, and whether it is said to be
        #: unreachable now (see ``request``'s ride_out).
        self._answered = self._down = False
        self._down_lock = threading.Lock()
        verify: Any = connection.verify
        if isinstance(verify, str):  # a CA bundle: httpx takes it as an SSL context
            import ssl

            verify = ssl.create_default_context(cafile=verify)
        self._http = httpx.Client(
            base_url=connection.url + API,
            headers={"Authorization": f"Bearer {connection.api_key}"},
            timeout=connection.timeout,
            verify=verify,
        )

    def request(self, method: str, path: str, *, ride_out: float = 0.0, **kwargs: Any) -> Any:
        """The JSON answer (or raw bytes for ``raw=True``); Kitaru errors otherwise.

        ``ride_out``: for so many seconds, a server that answered before but cannot be
        connected to now (restarting) is tried again, with backoff. Only a failed
        connection: the request was then never sent, so sending it again cannot apply
        it twice.
        """
        import httpx

        raw = kwargs.pop("raw", False)
        deadline = time.monotonic() + ride_out
        pause = _FIRST_PAUSE
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
                self._answered = True
                if self._down:  # said to be unreachable: say once that it is back
                    self._outage(False)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # A server that never answered this process is not restarting: a wrong
                # URL, or not started. Say so at once.
                if not self._answered or time.monotonic() + pause > deadline:
                    raise self._unreachable(exc) from None
                if not self._down:
                    self._outage(True, f"({exc}); trying again for up to {ride_out:.0f} s")
                time.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE)
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_from(response.status_code, body)
        return response.content if raw else response.json()

    def _outage(self, down: bool, detail: str = "") -> None:
        """Say once per outage, whichever thread meets it first, that the server is
        unreachable, and once that it answers again."""
        with self._down_lock:
            if self._down == down:
                return
            self._down = down
        if down:
            logger.warning(
                "The Kitaru server at %s is unreachable %s.", self.connection.url, detail
            )
        else:
            logger.warning("The Kitaru server at %s answers again.", self.connection.url)

    def _unreachable(self, exc: Exception) -> KitaruBackendError:
        return KitaruBackendError(
            f"Cannot reach the Kitaru server at {self.connection.url} "
            f"({type(exc).__name__}: {exc}). Is it running? (`kitaru server status`, or "
            "`kitaru logout` to use the store directly.)"
        )

    def store_request(self, method: str, path: str, **kwargs: Any) -> Any:
        """``request`` for a runner's store calls: a body the server refuses as too large
        (413) is the store failing under the runner (origin ``backend``: no retry is
        spent, the execution can be resumed), not a mistake in the flow.

        A server that is restarting is waited for (about a lease's length: a runner that
        cannot renew its lease for longer may be taken over anyway)."""
        try:
            return self.request(method, path, ride_out=_ride_out_seconds(), **kwargs)
        except KitaruError as exc:
            if getattr(exc, "http_status", None) != 413:
                raise
            raise KitaruBackendError(
                f"The Kitaru server at {self.connection.url} refused to store this: {exc}"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean)

    def server_info(self) -> dict[str, Any]:
        """The server's ``/version`` answer (asked once; empty if it does not answer)."""
        info = self._info
        if info is None:
            try:
                found = self.get("/version")
            except KitaruError:
                found = None
            info = self._info = found if isinstance(found, dict) else {}
        return info

    def page_size(self, wanted: int) -> int:
        """``wanted``, or less if the server returns fewer rows per page (asked once)."""
        found = self.server_info().get("max_page_size")
        cap = found if type(found) is int and found >= 1 else 0  # 0: not told
        return min(wanted, cap) if cap else wanted

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {})

    def stream(self, path: str, **params: Any) -> Iterator[tuple[str, str]]:
        """(event type, data) of each server-sent event of ``path``, until it ends."""
        import httpx

        clean = {k: v for k, v in params.items() if v is not None}
        try:
            with self._http.stream("GET", path, params=clean, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    try:
                        body = response.json()
                    except ValueError:
                        body = None
                    raise error_from(response.status_code, body)
                kind, data = "message", list[str]()
                for line in response.iter_lines():
                    if not line:
                        if data:
                            yield kind, "\n".join(data)
                        kind, data = "message", []
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
        except httpx.HTTPError as exc:
            raise KitaruBackendError(
                f"The event stream from the Kitaru server at {self.connection.url} broke off "
                f"({type(exc).__name__}: {exc})."
            ) from None

    def close(self) -> None:
        self._http.close()


_sessions: dict[Connection, Session] = {}
_lock = threading.Lock()


def session_for(connection: Connection) -> Session:
    with _lock:
        found = _sessions.get(connection)
        if found is None:
            found = _sessions[connection] = Session(connection)
        return found


def check_login(url: str, api_key: str, *, verify: bool | str = True, timeout: float = 30.0) -> str:
    """The server's version, if ``api_key`` is accepted there (else the server's error)."""
    return check_connection(Connection(url, api_key, "login", verify=verify, timeout=timeout))


def check_connection(connection: Connection) -> str:
    """The server's Kitaru version; ``KitaruBackendError`` if the URL answers, but not as
    a Kitaru server does."""
    session = Session(connection)
    try:
        answer = session.get("/version")
    finally:
        session.close()
    version = answer.get("version") if isinstance(answer, dict) else None
    if not isinstance(version, str) or answer.get("api") != "v1":
        raise KitaruBackendError(
            f"{connection.url} answered {API}/version, but not as a Kitaru server does (no "
            "Kitaru version in its answer). Check the URL: it should be the address `kitaru "
            "server start` printed."
        )
    return version
