"""Reading an environment variable that is usually unset, without an exception.

``os.environ.get(name)`` raises and catches ``KeyError`` twice inside ``os`` when the
variable is unset, which is the usual case for Kitaru's settings: a ``.run()`` reads
about ten of them, and the exceptions were a few percent of starting an execution.
This reads ``os.environ``'s own mapping instead, so it sees every change made through
``os.environ`` (``monkeypatch.setenv`` included), as ``os.environ.get`` does.
"""

from __future__ import annotations

import os
from typing import overload


@overload
def get(name: str) -> str | None: ...


@overload
def get(name: str, default: str) -> str: ...


def get(name: str, default: str | None = None) -> str | None:
    """``os.environ.get(name, default)``."""
    environ = os.environ
    data = getattr(environ, "_data", None)
    if data is None:  # not CPython's os._Environ: the public way
        return environ.get(name, default)
    raw = data.get(environ.encodekey(name))
    return default if raw is None else environ.decodevalue(raw)
