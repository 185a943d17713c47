"""Finding the flow a ``kitaru_executions_run`` target names: ``module_or_file:flow``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from kitaru.errors import KitaruUsageError
from kitaru.flow import Flow

_lock = threading.Lock()


def load_target(target: str) -> Flow[Any, Any]:
    """The ``@flow`` named by ``path/to/file.py:name`` or ``package.module:name``."""
    where, sep, name = target.rpartition(":")
    if not sep or not where.strip() or not name.strip():
        raise KitaruUsageError(
            f"target must look like 'module_or_file:flow' (e.g. 'agents/research.py:research' "
            f"or 'myproject.flows:research'), got {target!r}."
        )
    with _lock:
        module = _load_module(where.strip())
    found: Any = module
    for part in name.strip().split("."):
        found = getattr(found, part, None)
        if found is None:
            break
    if not isinstance(found, Flow):
        raise KitaruUsageError(
            f"{where!r} has no @flow named {name!r} (found {type(found).__name__}). "
            "Name a module-level function decorated with @kitaru.flow."
        )
    return found


def _load_module(where: str) -> ModuleType:
    path = Path(where)
    if where.endswith(".py") or path.is_file():
        return _import_file(path.expanduser().resolve())
    # A dotted module name, found from the working directory like `python -m` does.
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        raise KitaruUsageError(
            f"Cannot import module {where!r} ({exc}). Give a file path ending in .py, or run "
            "kitaru-mcp from the directory the module is importable from."
        ) from exc


def _import_file(path: Path) -> ModuleType:
    """A flow file imported as a top-level module named after it.

    Importing it (rather than running it as ``__main__``) records a module name
    and root that a worker or a later resume can import again.
    """
    if not path.is_file():
        raise KitaruUsageError(f"Flow file {str(path)!r} does not exist.")
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() == path:
        return existing
    if existing is not None:
        raise KitaruUsageError(
            f"Cannot load {str(path)!r} as module {name!r}: another module of that name is "
            "already loaded. Rename the file."
        )
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise KitaruUsageError(f"Cannot load {str(path)!r} as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
