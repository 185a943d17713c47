"""Finding a flow's code again, possibly in another process.

An execution records where its flow came from: module and qualified name, the
source file, the directory the module's package hangs off (``module_root``),
the project root (the nearest directory with ``.kitaru/`` — see ``kitaru
init``) and the working directory. A flow defined in a script run as
``python script.py`` lives in ``__main__``; it is loaded again the way
multiprocessing's spawn does it, under ``__mp_main__`` aliased as ``__main__``,
so its ``if __name__ == "__main__":`` block does not run again and classes
defined in the script resolve.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
import sys
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kitaru.errors import KitaruStateError

if TYPE_CHECKING:
    from collections.abc import Callable

    from kitaru.flow import Flow

PROJECT_MARKER = ".kitaru"

_load_lock = threading.Lock()
#: Scripts loaded in this process, by path (a worker may serve several).
_scripts: dict[str, Any] = {}


class FlowCodeNotFoundError(KitaruStateError):
    """The flow's code cannot be loaded in this process (module, file or name missing)."""


def find_project_root(start: Path) -> Path | None:
    found = _project_root(str(start), set())
    return Path(found) if found is not None else None


def _project_root(start: str, checked: set[str]) -> str | None:
    """The nearest directory from ``start`` up holding ``.kitaru/`` (skipping, and adding
    to, ``checked``: directories already looked at for this lookup)."""
    for directory, marker in _marker_candidates(start):
        if directory in checked:
            continue
        # access() first: a missing path is a False, not an exception to catch (most
        # directories up the tree hold no marker; every .run() looks).
        if os.access(marker, os.F_OK) and os.path.isdir(marker):
            return directory
        checked.add(directory)
    return None


@functools.lru_cache(maxsize=64)
def _marker_candidates(start: str) -> tuple[tuple[str, str], ...]:
    """(directory, its ``.kitaru``) for ``start`` and each parent: every ``.run()`` looks
    (a project may be created at any time), so only the ``stat`` is left to do each time."""
    path = Path(start)
    return tuple((str(d), str(d / PROJECT_MARKER)) for d in (path, *path.parents))


def flow_reference(func: Callable[..., Any]) -> dict[str, Any]:
    """Where to find ``func`` again from another process."""
    module = func.__module__
    file, module_root = _code_place(func, module)
    cwd = os.getcwd()
    checked: set[str] = set()
    project = _project_root(os.path.dirname(file) if file else cwd, checked)
    if project is None:
        project = _project_root(cwd, checked)
    return {
        "module": "__main__" if module == "__mp_main__" else module,
        "qualname": func.__qualname__,
        "file": file,
        "module_root": module_root,
        "project_root": project,
        "cwd": cwd,
    }


#: func -> (its module, source file, module root): found once per function, as the
#: code a function runs does not move (the lookup costs a dozen system calls).
_places: weakref.WeakKeyDictionary[Any, tuple[str, str | None, str | None]] = (
    weakref.WeakKeyDictionary()
)


def _code_place(func: Callable[..., Any], module: str) -> tuple[str | None, str | None]:
    try:
        known = _places.get(func)
    except TypeError:  # not weak-referenceable: look it up each time
        known = None
    if known is not None and known[0] == module:
        return known[1], known[2]
    try:
        source = inspect.getsourcefile(func)
    except TypeError:
        source = None
    file = Path(source).resolve() if source else None
    module_root = None
    if file is not None and module not in ("__main__", "__mp_main__"):
        # pkg/sub/mod.py for "pkg.sub.mod" -> the directory holding "pkg".
        depth = module.count(".") + (1 if file.name == "__init__.py" else 0)
        module_root = str(file.parents[depth]) if depth < len(file.parents) else None
    place = (module, str(file) if file else None, module_root)
    with contextlib.suppress(TypeError):
        _places[func] = place
    return place[1], place[2]


def load_flow(ref: dict[str, Any], *, exec_id: str) -> Flow[Any, Any]:
    """The Flow object for ``ref``; KitaruStateError saying what was looked for if absent."""
    from kitaru.flow import find_flow

    module, qualname, file = ref["module"], ref["qualname"], ref.get("file")
    found = find_flow(module, qualname, file=file) or (
        find_flow("__mp_main__", qualname, file=file) if module == "__main__" else None
    )
    if found is not None:
        return found
    if "<locals>" in qualname:
        raise FlowCodeNotFoundError(
            f"Cannot load flow {qualname!r} of execution {exec_id}: it is defined inside a "
            "function, so only the process that defined it can run it. Define flows at "
            "module level to resume them from another process."
        )
    with _load_lock:
        if module == "__main__":
            namespace = _load_script(ref, exec_id)
        else:
            namespace = _import_module(ref, exec_id)
    target: Any = namespace
    for part in qualname.split("."):
        target = target.get(part) if isinstance(target, dict) else getattr(target, part, None)
        if target is None:
            break
    from kitaru.flow import Flow

    if not isinstance(target, Flow):
        where = ref.get("file") or module
        raise FlowCodeNotFoundError(
            f"Cannot load flow {qualname!r} of execution {exec_id}: {where}, as this process "
            f"loaded it, defines no @flow named {qualname!r}. If the file gained it since "
            "(a long-running `kitaru worker` keeps the code it first imported), restart this "
            "process; otherwise restore the flow, or start a new execution."
        )
    return target


def _search_paths(ref: dict[str, Any]) -> list[str]:
    paths = [ref.get("module_root"), ref.get("project_root"), ref.get("cwd")]
    return [p for p in paths if p and Path(p).is_dir()]


def _import_module(ref: dict[str, Any], exec_id: str) -> Any:
    module = ref["module"]
    if module in sys.modules:
        return sys.modules[module]
    searched = _search_paths(ref)
    for path in reversed(searched):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise FlowCodeNotFoundError(
            f"Cannot load flow {ref['qualname']!r} of execution {exec_id}: module {module!r} "
            f"was not found ({exc}); looked on sys.path and in {', '.join(searched) or '-'}. "
            "Run from the project directory (mark it with `kitaru init`), install the "
            "package, or add its directory to PYTHONPATH."
        ) from exc
    except Exception as exc:
        raise _failed_to_load(ref, exec_id, f"importing module {module!r}", exc) from exc


def _failed_to_load(
    ref: dict[str, Any], exec_id: str, doing: str, exc: Exception
) -> FlowCodeNotFoundError:
    """The flow's own code raised while it was loaded (a missing environment variable,
    a bad import at its top): the user's to fix, said as such, not as Kitaru's bug."""
    return FlowCodeNotFoundError(
        f"Cannot load flow {ref['qualname']!r} of execution {exec_id}: {doing} raised "
        f"{type(exc).__name__}: {exc}. Fix that code or its environment (e.g. a missing "
        "environment variable), then try again; nothing was changed."
    )


def _load_script(ref: dict[str, Any], exec_id: str) -> Any:
    path = ref.get("file")
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if path and main_file and Path(main_file).resolve() == Path(path):
        return sys.modules["__main__"]  # resuming from inside the same script
    if not path or not Path(path).is_file():
        raise FlowCodeNotFoundError(
            f"Cannot load flow {ref['qualname']!r} of execution {exec_id}: it was defined in "
            f"the script {path or '(unknown file)'}, which no longer exists. Restore the "
            "script at that path to resume the execution."
        )
    try:
        module = _run_script(path)
    except Exception as exc:
        raise _failed_to_load(ref, exec_id, f"running the script {path}", exc) from exc
    # Classes and functions defined in the script name "__main__" as their module.
    sys.modules["__mp_main__"] = module
    sys.modules["__main__"] = module
    return module


def _run_script(path: str) -> Any:
    """The script at ``path`` as a module, its ``__main__`` block not run (once per path)."""
    existing = _scripts.get(path)
    if existing is not None:
        return existing
    script_dir = str(Path(path).parent)
    if script_dir not in sys.path:
        sys.path.insert(0, script_dir)
    import runpy  # only when a script's flow is loaded again

    namespace = runpy.run_path(path, run_name="__mp_main__")
    module = type(sys)("__mp_main__")
    module.__dict__.update(namespace)
    module.__file__ = path
    _scripts[path] = module
    return module


def load_script_main(ref: dict[str, Any], *, exec_id: str) -> Any:
    """The script of ``ref`` (a flow run as ``python script.py``) loaded as a resume loads
    it, as ``__mp_main__`` aliased as ``__main__``.

    For an isolated checkpoint's process: a runner that resumed the flow pickles the
    script's functions and classes by reference to ``__mp_main__``, which a new process
    only has once the script is loaded (multiprocessing's spawn does the same).
    """
    with _load_lock:
        return _load_script(ref, exec_id)


def script_module(path: str) -> Any:
    """The flow script at ``path`` loaded for its classes, leaving this process's
    ``__main__`` alone (it is the caller's own program)."""
    with _load_lock:
        module = _run_script(path)
        # Pydantic resolves a model's annotations through its module, "__mp_main__".
        sys.modules.setdefault("__mp_main__", module)
        return module
