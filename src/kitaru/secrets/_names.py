"""Secret names and value keys: what the CLI, the registry and the store accept."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kitaru.errors import KitaruUsageError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,254}$")


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise KitaruUsageError(
            f"Secret name {name!r} is not valid: use letters, digits, '_', '.' and '-' "
            "(up to 255 characters, starting with a letter or digit)."
        )
    return name


def check_values(name: str, values: object) -> dict[str, str]:
    """A secret's values: a non-empty mapping of key names to strings (shown by key only)."""
    if not isinstance(values, Mapping) or not values:
        raise KitaruUsageError(
            f"Secret {name!r} needs at least one value as a mapping of KEY to string, "
            "e.g. {'OPENAI_API_KEY': '...'} (CLI: kitaru secrets set NAME --KEY=value)."
        )
    out: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise KitaruUsageError(
                f"Secret {name!r}: key {key!r} is not valid (letters, digits, '_', '.', '-'; "
                "starting with a letter or '_')."
            )
        if not isinstance(value, str):
            # The message names the key and the type, never the value.
            raise KitaruUsageError(
                f"Secret {name!r}: the value of {key!r} must be a string, got "
                f"{type(value).__name__}."
            )
        out[key] = value
    return out


def describe_keys(values: Mapping[str, Any]) -> list[str]:
    return sorted(values)
