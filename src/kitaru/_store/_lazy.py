"""Modules imported on first use, so a process that never needs them never pays for them.

A SQLite store whose schema is current runs a flow on the ``sqlite3`` driver alone
(``_sqlite_direct``): importing SQLAlchemy and building the table metadata would be
most of such a script's start-up. The store's modules therefore name SQLAlchemy and
the schema through :class:`LazyModule`; the real import happens at the first
attribute read (a query the direct path does not cover, PostgreSQL, a migration).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


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
