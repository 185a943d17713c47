"""Bearer API keys: every route but ``health`` depends on :func:`require_read`.

Control routes depend on :func:`require_write`: a read-only key gets 403 there.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kitaru._backend import get_backend
from kitaru.server._accounts import ApiKey, verify
from kitaru.server._errors import ApiError


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "KitaruAuthenticationError",
            "This request needs an API key: send the header 'Authorization: Bearer <key>' "
            "(create a key with `kitaru auth api-keys create`).",
        )
    return token.strip()


def require_read(request: Request) -> ApiKey:
    key = verify(get_backend().store, _bearer(request))
    if key is None:
        raise ApiError(
            401,
            "KitaruAuthenticationError",
            "The API key is not valid (unknown, rotated or deleted). Use a current key; "
            "`kitaru auth api-keys list` shows them.",
        )
    return key


def require_write(key: Annotated[ApiKey, Depends(require_read)]) -> ApiKey:
    if key.access not in ("write", "runner"):
        raise ApiError(
            403,
            "KitaruPermissionError",
            f"API key {key.name!r} of service account {key.account!r} is read-only; this "
            "operation changes executions and needs a read-write key.",
        )
    return key


def require_runner(key: Annotated[ApiKey, Depends(require_read)]) -> ApiKey:
    if key.access != "runner":
        raise ApiError(
            403,
            "KitaruPermissionError",
            f"API key {key.name!r} of service account {key.account!r} may not record "
            "executions: runners and workers need a key created with --runner.",
        )
    return key


Reader = Annotated[ApiKey, Depends(require_read)]
Runner = Annotated[ApiKey, Depends(require_runner)]
Writer = Annotated[ApiKey, Depends(require_write)]
