"""Importing an adapter whose framework is not installed fails with the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from kitaru.errors import KitaruFeatureNotAvailableError


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """``module`` imported, or KitaruFeatureNotAvailableError naming ``kitaru[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise KitaruFeatureNotAvailableError(
            f"{feature} needs the {module!r} package, which is not installed "
            f"({exc}). Install Kitaru with the {extra!r} extra: "
            f"pip install 'kitaru[{extra}]' (from your Kitaru checkout or wheel)."
        ) from exc
