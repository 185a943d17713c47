"""When a small configuration file may be re-used as last read, without reading it again.

Every ``.run()`` consults the nearest ``pyproject.toml`` and the global config file
(several times: settings, limits, LLM settings). Reading and parsing them each time
is most of the cost of a ``.run()`` outside its commit; a ``stat`` tells whether
they changed since this process last read them.

A file's *version* is what ``stat`` reports of it: device, inode, size, mtime and
ctime (in ns). Any write changes it (an atomic replace changes the inode, an edit
the size or the times), except a same-size rewrite within the filesystem's
timestamp granularity (a clock tick, up to 2 s on FAT) of the read: its times may
come out equal. So a version is trusted only once the file has been quiet for
:data:`SETTLE_NS` before it was looked at (:func:`settled`); until then callers
read the file again each time, as they did before this cache existed. (A network
filesystem whose clock lags this machine's by more than that could defeat this.)
"""

from __future__ import annotations

import contextvars
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

_T = TypeVar("_T")

#: How long a file must have gone unmodified before its version alone is trusted.
SETTLE_NS: Final = 3_000_000_000

#: (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)
Version = tuple[int, int, int, int, int]


def file_version(path: str) -> Version | None:
    """The version of the regular file at ``path``; None if there is none (or no access)."""
    try:
        return version_of(os.stat(path))
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None


def version_of(st: os.stat_result) -> Version | None:
    """The version ``st`` gives its file; None unless it is a regular file."""
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def now_ns() -> int:
    """The wall clock, to pass to :func:`settled` (taken before the file is looked at)."""
    return time.time_ns()


def settled(version: Version | None, looked_at_ns: int) -> bool:
    """True if any later write to the file must give it another version (False for
    no version).

    ``looked_at_ns`` is :func:`now_ns` from before ``version`` was taken.
    """
    return version is not None and max(version[3], version[4]) < looked_at_ns - SETTLE_NS


def unchanged(kept: Version | None, kept_settled: bool, now: Version | None) -> bool:
    """Whether a file read when its version was ``kept`` (:func:`settled` then or not)
    may be used as read, its version being ``now``; else it must be read again."""
    return kept_settled and now is not None and kept == now


class _Looks:
    """The lookups of one :func:`one_look` block (what was looked up -> the result)."""

    __slots__ = ("found", "open", "thread")

    def __init__(self) -> None:
        self.found: dict[str, Any] = {}
        self.open = True
        self.thread = threading.get_ident()


_looks: contextvars.ContextVar[_Looks | None] = contextvars.ContextVar(
    "kitaru_config_looks", default=None
)


@contextmanager
def one_look() -> Iterator[None]:
    """Within the block, each configuration file is looked for and checked once.

    A ``.run()`` consults the project file for its settings, its input limit and
    its LLM settings: one look serves them all (and they agree on one version of
    the file). Only for the thread that entered the block, and only while it is
    open: a thread or task that inherits the context (a runner started inside)
    looks for itself.
    """
    looks = _Looks()
    token = _looks.set(looks)
    try:
        yield
    finally:
        looks.open = False
        _looks.reset(token)


def looked(what: str, look: Callable[[], _T]) -> _T:
    """``look()``, or what it returned earlier in the enclosing :func:`one_look` block."""
    looks = _looks.get()
    if looks is None or not looks.open or looks.thread != threading.get_ident():
        return look()
    found = looks.found
    if what in found:  # (not try/except KeyError: the first look of each is the usual one)
        return found[what]  # type: ignore[no-any-return]
    value = found[what] = look()  # an exception is not kept: the next call raises
    return value


__all__ = [
    "SETTLE_NS",
    "Version",
    "file_version",
    "looked",
    "now_ns",
    "one_look",
    "settled",
    "unchanged",
    "version_of",
]
