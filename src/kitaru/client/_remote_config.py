"""Which Kitaru server this process talks to, if any.

Highest first: ``kitaru.connect(url, api_key=...)`` in this process, then
``KITARU_SERVER_URL`` with ``KITARU_AUTH_TOKEN`` (both or neither), then the
credentials ``kitaru login`` saved (``credentials.json`` in the config
directory, 0600). None of them: the store is used directly.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kitaru.errors import KitaruUsageError

ENV_SERVER_URL = "KITARU_SERVER_URL"
ENV_AUTH_TOKEN = "KITARU_AUTH_TOKEN"
CREDENTIALS_FILENAME = "credentials.json"


class Connection:
    """A Kitaru server and the API key to use it with; ``source`` says where it was set
    (``connect()``, the environment, ``kitaru login``...).

    Compared by value, and its repr leaves the key out. A plain class: this module is
    imported by every run (to learn that no server is used), and building a dataclass
    costs ~1 ms at import.
    """

    __slots__ = ("api_key", "source", "timeout", "url", "verify")

    def __init__(
        self, url: str, api_key: str, source: str, verify: bool | str = True, timeout: float = 30.0
    ) -> None:
        self.url, self.api_key, self.source, self.verify = url, api_key, source, verify
        self.timeout = timeout

    def _key(self) -> tuple[str, str, str, bool | str, float]:
        return (self.url, self.api_key, self.source, self.verify, self.timeout)

    def __eq__(self, other: object) -> bool:
        return self._key() == other._key() if isinstance(other, Connection) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Connection(url={self.url!r}, source={self.source!r}, verify={self.verify!r}, "
            f"timeout={self.timeout!r})"
        )


_lock = threading.Lock()
_connected: Connection | None = None
#: Set in the server process: it serves its store and never talks to a server itself
#: (not even one a saved login or the environment names: that could be itself).
_store_only = False


def use_store_only() -> None:
    global _store_only
    _store_only = True


@contextmanager
def store_only() -> Iterator[None]:
    """Within the block this process uses its store itself, whatever login it has."""
    global _store_only
    previous, _store_only = _store_only, True
    try:
        yield
    finally:
        _store_only = previous


def normalize_url(url: str) -> str:
    text = (url if isinstance(url, str) else "").strip()
    if not text.startswith(("http://", "https://")):
        raise KitaruUsageError(
            f"A Kitaru server URL starts with http:// or https://, got {url!r} "
            "(e.g. http://127.0.0.1:8383)."
        )
    return text.rstrip("/")


def set_connection(connection: Connection | None) -> None:
    global _connected
    with _lock:
        _connected = connection


def credentials_file() -> Path:
    from kitaru._paths import config_dir

    return config_dir() / CREDENTIALS_FILENAME


def save_credentials(
    url: str, api_key: str, *, verify: bool | str = True, timeout: float | None = None
) -> Path:
    """Write the login (0600, replaced atomically), with its TLS and timeout settings."""
    path = credentials_file()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    data: dict[str, Any] = {"server_url": url, "api_key": api_key}
    if verify is not True:
        data["verify"] = verify  # False, or a CA bundle's path
    if timeout is not None:
        data["timeout"] = timeout
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def forget_credentials() -> bool:
    path = credentials_file()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _saved() -> Connection | None:
    override = os.environ.get("KITARU_CONFIG_PATH", "").strip()
    if override and not Path(override).expanduser().is_dir():
        return None  # no config dir yet: nobody logged in (and do not create it here)
    path = credentials_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise KitaruUsageError(
            f"The saved login in {path} cannot be read ({exc}); run `kitaru logout` and "
            "`kitaru login` again."
        ) from None
    url, key = data.get("server_url"), data.get("api_key")
    verify, timeout = data.get("verify", True), data.get("timeout", 30.0)
    if (
        not isinstance(url, str)
        or not isinstance(key, str)
        or not isinstance(verify, bool | str)
        or isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not timeout > 0
    ):
        raise KitaruUsageError(
            f"The saved login in {path} is incomplete; run `kitaru logout` and `kitaru login` "
            "again."
        )
    return Connection(url, key, "kitaru login", verify=verify, timeout=float(timeout))


def current_connection() -> Connection | None:
    """The server to use, or None for the store itself."""
    if _store_only:
        return None
    if _connected is not None:
        return _connected
    url = os.environ.get(ENV_SERVER_URL, "").strip()
    token = os.environ.get(ENV_AUTH_TOKEN, "").strip()
    store_url = os.environ.get("KITARU_STORE_URL", "").strip()
    if store_url.startswith(("kitaru+http://", "kitaru+https://")) and not url:
        # Recording through a server (KITARU_STORE_URL=kitaru+http://...): read through it too.
        server = normalize_url(store_url.removeprefix("kitaru+"))
        if token:
            return Connection(server, token, "KITARU_STORE_URL")
        saved = _saved()
        if saved is not None and saved.url == server:
            return saved
        raise KitaruUsageError(
            f"KITARU_STORE_URL names the Kitaru server {server}: set {ENV_AUTH_TOKEN} to an "
            f"API key, or `kitaru login {server} --api-key KEY`."
        )
    if url or token:
        if not (url and token):
            missing = ENV_AUTH_TOKEN if url else ENV_SERVER_URL
            given = ENV_SERVER_URL if url else ENV_AUTH_TOKEN
            raise KitaruUsageError(
                f"{given} is set but {missing} is not: set both to use a Kitaru server "
                "(the URL and an API key), or neither to use the store directly."
            )
        return Connection(normalize_url(url), token, "environment")
    return _saved()


def connect(
    server_url: str,
    *,
    api_key: str | None = None,
    refresh: bool = False,
    project: str | None = None,
    no_verify_ssl: bool = False,
    ssl_ca_cert: str | None = None,
    cloud_api_url: str | None = None,
    timeout: float | None = None,
) -> None:
    """Talk to the Kitaru server at ``server_url`` from now on, in this process.

    The key is checked at once (a wrong one raises the server's error). ``refresh``
    and ``cloud_api_url`` (0.21's ZenML Pro control plane, which a Kitaru server does
    not have) are accepted for compatibility and unused; ``project`` is not supported.
    """
    del refresh, cloud_api_url
    from kitaru.errors import KitaruFeatureNotAvailableError

    if project is not None:
        raise KitaruFeatureNotAvailableError(
            "connect(project=...) is not supported: a Kitaru server serves one store."
        )
    if not api_key or not isinstance(api_key, str):
        raise KitaruUsageError(
            f"connect({server_url!r}) needs api_key=... as text (create one with "
            "`kitaru auth api-keys create ACCOUNT NAME`)."
        )
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise KitaruUsageError(f"connect(timeout=...) must be seconds > 0, got {timeout!r}.")
    verify: bool | str = ssl_ca_cert if ssl_ca_cert else not no_verify_ssl
    connection = Connection(
        normalize_url(server_url),
        api_key,
        "kitaru.connect()",
        verify=verify,
        timeout=30.0 if timeout is None else float(timeout),
    )
    from kitaru.client._remote import check_connection

    check_connection(connection)
    set_connection(connection)


def disconnect() -> None:
    """Forget ``connect()`` in this process (saved logins and environment still apply)."""
    set_connection(None)


def served_by_local_server(connection: Connection) -> str | None:
    """The store URL, if ``connection`` is the background server ``kitaru login`` started
    on this machine: a process here may record into that store directly (the server
    reads the same store), without an HTTP request per checkpoint.
    """
    if connection.source != "kitaru login":
        return None
    from kitaru._paths import config_dir

    try:
        data = json.loads((config_dir() / "server" / "server.pid").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("url") != connection.url:
        return None
    served = data.get("store_url")
    return served if isinstance(served, str) and served else None
