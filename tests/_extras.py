"""Tests of an optional integration: skip without it, but FAIL under CI=true."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def need(module: str, extra: str) -> ModuleType:
    """``module`` imported; without it skip (say how to get it), or fail when CI=true."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"needs {module!r}: pip install -e '.[{extra}]' (the dev extra has it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason, allow_module_level=True)
        raise  # unreachable: skip raises
