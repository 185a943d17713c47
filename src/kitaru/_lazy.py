"""Imports done on first use, so a process that never needs a module never pays for it.

* :func:`lazy_getattr`: public names of ``kitaru`` and ``kitaru.client`` (the client,
  ``kitaru.llm``, secrets) load when a script first touches them (PEP 562).
* :class:`LazyModule`: a SQLite store whose schema is current runs a flow on the
  ``sqlite3`` driver alone (``_store/_sqlite_direct``); importing SQLAlchemy and
  building the table metadata would be most of such a script's start-up, so the
  store's modules name SQLAlchemy and the schema through it, and the real import
  happens at the first attribute read (a query the direct path does not cover,
  PostgreSQL, a migration).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any


def lazy_getattr(
    module: str, sources: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``name`` from ``sources[name]`` once."""

    def __getattr__(name: str) -> Any:
        source = sources.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        namespace[name] = value  # found directly from now on
        return value

    return __getattr__


class LazyModule:
    """Stands for the module ``name``; imports it when an attribute is first read.

    Every read goes to the module itself (no copy of its attributes), so what a
    test patches on the module is what the code through this proxy sees.
    """

    def __init__(self, name: str) -> None:
        self.__dict__["_lazy_name"] = name
        self.__dict__["_lazy_module"] = None

    def _load(self) -> ModuleType:
        module: ModuleType | None = self.__dict__["_lazy_module"]
        if module is None:
            # importlib's per-module locks make a second thread wait for the first import.
            module = importlib.import_module(self.__dict__["_lazy_name"])
            self.__dict__["_lazy_module"] = module
        return module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._load(), attr, value)

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_name']!r}>"
