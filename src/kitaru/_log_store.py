"""Where runtime logs go: Kitaru 0.21's global ``log-store`` setting.

Captured output and logging records are always kept in the Kitaru store, next to
the executions (``kitaru executions logs``). Kitaru 0.21 let users name an
external, OpenTelemetry-compatible log backend (its name, an http(s) endpoint and
an optional API key) with ``kitaru log-store set``; scripts written for it set,
show and reset that setting. It is kept here the same way (environment first,
then the user config, then the default) and shown with the key masked. Like 0.21,
Kitaru records the setting but does not send logs to that backend.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlparse

from kitaru.errors import KitaruUsageError

#: The default: logs live in the Kitaru store. 0.21 called its default
#: "artifact-store"; that name is accepted for it too.
DEFAULT_BACKEND = "kitaru-store"
_DEFAULT_NAMES = frozenset({DEFAULT_BACKEND, "artifact-store"})

ENV_BACKEND = "KITARU_LOG_STORE_BACKEND"
ENV_ENDPOINT = "KITARU_LOG_STORE_ENDPOINT"
ENV_API_KEY = "KITARU_LOG_STORE_API_KEY"

#: The user config's key (config.json) for a backend set with `kitaru log-store set`.
CONFIG_KEY = "log_store"

_BACKEND_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class LogStore:
    """The log store in effect and where that setting came from."""

    __slots__ = ("api_key", "backend", "endpoint", "source")

    def __init__(
        self, backend: str, endpoint: str | None, api_key: str | None, source: str
    ) -> None:
        self.backend, self.endpoint, self.api_key, self.source = (
            backend,
            endpoint,
            api_key,
            source,
        )

    def to_dict(self) -> dict[str, Any]:
        """What ``kitaru log-store show`` prints: never the key itself."""
        default = self.backend == DEFAULT_BACKEND
        return {
            "backend": self.backend,
            "endpoint": self.endpoint,
            "api_key": None if self.api_key is None else "***",
            "source": self.source,
            "is_default": default,
            "logs_kept_in": "the Kitaru store (kitaru executions logs)",
            "exports_logs": False,
        }


def check_backend(backend: object) -> str:
    name = backend.strip().lower() if isinstance(backend, str) else ""
    if not _BACKEND_NAME.fullmatch(name):
        raise KitaruUsageError(
            f"Log store backend {backend!r} is not a valid name: use 1-64 lowercase "
            "letters, digits, dots, underscores or hyphens (e.g. 'datadog', 'otel')."
        )
    return name


def check_endpoint(endpoint: object) -> str:
    text = endpoint.strip().rstrip("/") if isinstance(endpoint, str) else ""
    parsed = urlparse(text)
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.netloc
        or any(c.isspace() for c in text)
    ):
        raise KitaruUsageError(
            f"Log store endpoint {endpoint!r} is not an http:// or https:// URL; pass e.g. "
            "--endpoint https://logs.example.com."
        )
    return text


def check_api_key(api_key: object) -> str | None:
    if api_key is None:
        return None
    if not isinstance(api_key, str) or not api_key.strip() or "\n" in api_key:
        raise KitaruUsageError(
            "Log store API key must be non-empty text on one line; leave --api-key out "
            "if the backend needs none."
        )
    return api_key.strip()


def _from_environment() -> LogStore | None:
    backend = os.environ.get(ENV_BACKEND)
    endpoint = os.environ.get(ENV_ENDPOINT) or None
    api_key = os.environ.get(ENV_API_KEY) or None
    if backend is None:
        if endpoint is not None or api_key is not None:
            raise KitaruUsageError(
                f"{ENV_ENDPOINT} or {ENV_API_KEY} is set without {ENV_BACKEND}: set "
                f"{ENV_BACKEND} too (e.g. datadog), or unset them."
            )
        return None
    name = check_backend(backend)
    if name in _DEFAULT_NAMES:
        if endpoint is not None or api_key is not None:
            raise KitaruUsageError(
                f"{ENV_BACKEND}={backend} is the default log store, which takes no "
                f"endpoint or key: unset {ENV_ENDPOINT} and {ENV_API_KEY}."
            )
        return LogStore(DEFAULT_BACKEND, None, None, "environment")
    if endpoint is None:
        raise KitaruUsageError(
            f"{ENV_BACKEND}={backend} needs {ENV_ENDPOINT} (an http:// or https:// URL)."
        )
    return LogStore(name, check_endpoint(endpoint), check_api_key(api_key), "environment")


def _from_config(stored: object) -> LogStore | None:
    if stored is None:
        return None
    from kitaru._paths import global_config_file

    try:
        assert isinstance(stored, dict)
        return LogStore(
            check_backend(stored["backend"]),
            check_endpoint(stored["endpoint"]),
            check_api_key(stored.get("api_key")),
            "global user config",
        )
    except (AssertionError, KeyError, KitaruUsageError) as exc:
        raise KitaruUsageError(
            f"The log store setting in {global_config_file()} is damaged ({exc}); run "
            "`kitaru log-store reset` (or set it again with `kitaru log-store set`)."
        ) from None


def resolve() -> LogStore:
    """The log store in effect: environment, then the user config, then the default."""
    from kitaru._paths import read_global_config

    found = _from_environment() or _from_config(read_global_config().get(CONFIG_KEY))
    return found or LogStore(DEFAULT_BACKEND, None, None, "default")


def set_log_store(backend: str, *, endpoint: str, api_key: str | None = None) -> LogStore:
    """Record an external backend in the user config; the setting then in effect."""
    name = check_backend(backend)
    if name in _DEFAULT_NAMES:
        raise KitaruUsageError(
            f"{backend!r} is the default log store already; `kitaru log-store reset` returns to it."
        )
    entry: dict[str, Any] = {"backend": name, "endpoint": check_endpoint(endpoint)}
    key = check_api_key(api_key)
    if key is not None:
        entry["api_key"] = key
    from kitaru._paths import update_global_config

    with update_global_config() as data:
        data[CONFIG_KEY] = entry
    return resolve()


def reset_log_store() -> LogStore:
    """Forget the recorded backend; the setting then in effect."""
    from kitaru._paths import update_global_config

    with update_global_config() as data:
        data.pop(CONFIG_KEY, None)
    return resolve()
