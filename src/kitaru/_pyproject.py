"""``[tool.kitaru]`` in the nearest ``pyproject.toml``: finding, parsing, checking it.

A broken file must not lock users out of their data, nor pass silently:

* Invalid TOML (or a ``[tool.kitaru]`` that is not a table) is an error for what
  decides how a flow runs (``strict=True``: settings resolution), and a warning for
  everything else (reading commands, ``kitaru status``): the file is then ignored.
* A key Kitaru does not know (usually a typo) is a warning naming the closest
  valid key.

Each warning is given once per process for one content of the file, as a
:class:`KitaruConfigWarning` (the CLI prints it as one ``Warning:`` line on stderr).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Final

from kitaru import _filecache
from kitaru._filecache import Version, file_version, looked, settled, unchanged
from kitaru.errors import KitaruUsageError

#: Every key Kitaru reads from [tool.kitaru].
KNOWN_KEYS: Final = (
    "stack",
    "cache",
    "retries",
    "image",
    "store_url",
    "artifacts_root",
    "llm_estimated_costs",
    "allow_pickle",
    "max_flow_input_bytes",
    "max_wait_input_bytes",
)


class KitaruConfigWarning(UserWarning):
    """A configuration file is broken or has keys Kitaru does not know; it was ignored."""


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` from ``start`` (default: the cwd) upward."""
    try:
        here = str(start.absolute()) if start is not None else os.getcwd()
    except OSError:  # the cwd was deleted
        return None
    for name, candidate in _candidates(here):
        # access() first: a missing file is a False, not an exception to catch.
        if os.access(name, os.F_OK) and os.path.isfile(name):
            return candidate
    return None


@functools.lru_cache(maxsize=64)
def _candidates(here: str) -> tuple[tuple[str, Path], ...]:
    """``pyproject.toml`` in ``here`` and each parent, nearest first (built once per cwd:
    every ``.run()`` looks, so only the ``stat`` of each is left to do)."""
    directory = Path(here)
    return tuple(
        (str(candidate), candidate)
        for candidate in (d / "pyproject.toml" for d in (directory, *directory.parents))
    )


class _Parsed:
    """The last read of a pyproject.toml (a plain class: a dataclass costs ~1 ms at import).

    ``table`` is None when the file cannot be used, and ``problem`` says why (for the
    error or the warning). ``version`` is the file's version when ``raw`` was read,
    and ``settled`` whether that alone tells a later change (see kitaru._filecache);
    until then the file is read and compared again. ``raw`` is None for a parse
    taken from the disk cache (below). ``clean``: nothing to warn about.
    """

    __slots__ = ("clean", "problem", "raw", "settled", "table", "version", "warned")

    def __init__(
        self,
        raw: bytes | None,
        table: dict[str, Any] | None,
        problem: str | None = None,
        *,
        clean: bool = False,
    ) -> None:
        self.raw, self.table, self.problem, self.clean = raw, table, problem, clean
        self.warned = False
        self.version: Version | None = None
        self.settled = False


# path -> last parse. Keyed on content; the file is not read again only while its
# version is unchanged and settled (a rewrite within the filesystem's timestamp
# granularity must not be missed).
_cache: dict[Path, _Parsed] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget parsed files (and which warnings were given); for tests."""
    with _lock:
        _cache.clear()


def pyproject_table(*, strict: bool) -> tuple[Path, dict[str, Any]] | None:
    """The nearest pyproject's ``[tool.kitaru]`` table (empty if absent), or None.

    A file that cannot be used raises ``KitaruUsageError`` when ``strict``;
    otherwise it warns (once) and reads as no file at all.
    """
    found = looked("pyproject", _look)
    if found is None:
        return None
    path, parsed = found
    with _lock:
        if parsed.table is not None:
            return path, parsed.table
        if strict:
            raise KitaruUsageError(
                f"Cannot read Kitaru settings from {path}: {parsed.problem}. Fix the file, "
                "or run from a directory outside that project."
            )
        if not parsed.warned:
            parsed.warned = True
            _warn(
                f"Ignoring {path}: {parsed.problem}. Its [tool.kitaru] settings are not "
                "applied until the file is fixed; running a flow fails until then."
            )
        return None


def _look() -> tuple[Path, _Parsed] | None:
    """The nearest pyproject and its parse; read again unless its version says unchanged."""
    path = find_pyproject()
    if path is None:
        return None
    looked_at = _filecache.now_ns()
    version = file_version(str(path))
    with _lock:
        parsed = _cache.get(path)
    if parsed is None and version is not None:
        known = _disk_cached(path, version)
        if known is not None:
            with _lock:
                parsed = _cache.setdefault(path, known)
    if parsed is None or not unchanged(parsed.version, parsed.settled, version):
        try:
            raw = _read(path)
        except OSError:
            return None
        with _lock:
            parsed = _cache.get(path)
            if parsed is None or parsed.raw != raw:
                parsed = _parse(path, raw)
                _cache[path] = parsed
            parsed.version = version
            parsed.settled = settled(version, looked_at)
        if parsed.settled and parsed.clean and version is not None:
            _disk_keep(path, version, parsed.table)
    return path, parsed


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _parse(path: Path, raw: bytes) -> _Parsed:
    import difflib  # only when a file is (re)parsed
    import tomllib

    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return _Parsed(raw, None, f"it is not valid TOML ({exc})")
    tool = document.get("tool", {})
    table = tool.get("kitaru", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        return _Parsed(raw, None, f"[tool.kitaru] must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(KNOWN_KEYS))
    for key in unknown:
        close = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        _warn(
            f"Unknown key {key!r} in [tool.kitaru] of {path}; it is ignored.{hint} "
            f"Valid keys: {', '.join(KNOWN_KEYS)}."
        )
    return _Parsed(raw, table, clean=not unknown)


# -- the parse kept on disk, for the next process ---------------------------------------
#
# Parsing needs tomllib, whose import (with the ``datetime`` it pulls in) costs ~8 ms,
# more than the rest of a one-step ``python script.py``'s own work. A project file
# rarely changes between runs, so a clean parse (valid, no unknown key) is kept in the
# config directory under the file's version, and only a *settled* version (see
# kitaru._filecache): a later write must give the file another version. A file that
# warns or fails is parsed each time, so its warning or error is given each time. The
# cache is only ever a shortcut: a missing, unreadable or damaged one is ignored.

_DISK_CACHE = "pyproject-cache.json"
_DISK_CACHE_ENTRIES = 64


def _disk_cached(path: Path, version: Version) -> _Parsed | None:
    entry = _disk_entries().get(str(path))
    if not isinstance(entry, dict) or entry.get("version") != list(version):
        return None
    table = entry.get("table")
    if not isinstance(table, dict):
        return None
    parsed = _Parsed(None, table, clean=True)
    parsed.version, parsed.settled = version, True
    return parsed


def _disk_entries() -> dict[str, Any]:
    import json

    from kitaru._paths import existing_config_dir

    directory = existing_config_dir()
    if directory is None:
        return {}
    try:
        with open(directory / _DISK_CACHE, "rb") as handle:
            data = json.loads(handle.read())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _disk_keep(path: Path, version: Version, table: dict[str, Any] | None) -> None:
    import json

    from kitaru._paths import PRIVATE_FILE_MODE, existing_config_dir

    directory = existing_config_dir()
    if directory is None or table is None:
        return
    entries = _disk_entries()
    entries.pop(str(path), None)
    entries[str(path)] = {"version": list(version), "table": table}
    while len(entries) > _DISK_CACHE_ENTRIES:  # the oldest kept first
        entries.pop(next(iter(entries)))
    target = directory / _DISK_CACHE
    tmp = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        payload = json.dumps(entries, allow_nan=False).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        with open(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, target)  # readers see the old file or the new one, whole
    except (OSError, TypeError, ValueError):  # e.g. a TOML date: not JSON, not kept
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _warn(message: str) -> None:
    warnings.warn(message, KitaruConfigWarning, stacklevel=2)


__all__ = ["KNOWN_KEYS", "KitaruConfigWarning", "clear_cache", "find_pyproject", "pyproject_table"]
