"""Finding classes defined in a flow's script (``python script.py``) from another process.

A value whose class was defined in the script is stored with the class path
``__main__:Name``, which means nothing in the CLI or in another program. For
user-facing loads (``kitaru.load``, ``ArtifactRef.load``, a handle's result) the
class is taken from the script the execution recorded, loaded as the worker loads
it for a resume (its ``if __name__ == "__main__":`` block does not run). When that
script is gone or fails to load, the value comes back as its stored JSON data with
a :class:`~kitaru.errors.KitaruPlainDataWarning` (see ``kitaru._blobs.serializers``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kitaru._blobs.serializers import script_classes

if TYPE_CHECKING:
    from kitaru._backend import Backend


def _same_file(a: str | None, b: str) -> bool:
    if not a:
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _finder(backend: Backend, exec_id: str | None) -> Callable[[str], type | None]:
    module: list[Any] = []  # the recorded script's module, looked up on first use

    def script() -> Any:
        if module:
            return module[0]
        found: Any = None
        record = backend.store.get_execution(exec_id) if exec_id else None
        ref = record.flow_ref if record is not None else {}
        path = ref.get("file") if ref.get("module") == "__main__" else None
        if path:
            main = sys.modules.get("__main__")
            if _same_file(getattr(main, "__file__", None), path):
                found = main  # loading from inside the script itself
            elif Path(path).is_file():
                from kitaru._runtime.loader import script_module

                # A script that fails to load leaves the plain-data fallback.
                with contextlib.suppress(Exception):
                    found = script_module(path)
        module.append(found)
        return found

    def find(qualname: str) -> type | None:
        obj = script()
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        return obj if isinstance(obj, type) else None

    return find


@contextlib.contextmanager
def from_flow_script(backend: Backend, exec_id: str | None) -> Iterator[None]:
    """Within this block, script classes of ``exec_id``'s values are found (or skipped)."""
    token = script_classes.set(_finder(backend, exec_id))
    try:
        yield
    finally:
        script_classes.reset(token)
