"""Python's SQLite driver, without the ``sqlite3`` package's ``dbapi2`` wrapper.

``import sqlite3`` runs ``sqlite3/dbapi2.py``, which imports ``datetime`` (~4 ms at
start-up here) to register date and time adapters Kitaru never uses: it binds
numbers, text and bytes only. The driver itself is the ``_sqlite3`` extension,
whose classes and functions ``sqlite3`` re-exports unchanged (``sqlite3.connect``
*is* ``_sqlite3.connect``). An interpreter without that extension module name
falls back to the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3
else:
    try:
        import _sqlite3 as sqlite3
    except ImportError:  # pragma: no cover - every CPython build we know has it
        import sqlite3

__all__ = ["sqlite3"]
