"""Child processes that must not outlive the Kitaru process that started them.

A server's worker, an isolated checkpoint's process: when their parent dies, even by
SIGKILL, Linux sends them a signal (``prctl(PR_SET_PDEATHSIG)``), so nothing keeps
running that another process may start again (a resumed execution re-runs the call).
The parent's pid travels in the child's environment: a parent that died before the
child set this up is seen at once (the child's parent is then another process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def parent_env(variable: str) -> dict[str, str]:
    """The environment entry a child started now checks with :func:`die_with_parent`."""
    return {variable: str(os.getpid())}


def die_with_parent(variable: str, sig: signal.Signals) -> None:
    """In the child: get ``sig`` when the parent dies; exit now if it already has."""
    parent = os.environ.get(variable, "")
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if parent.isdigit() and os.getppid() != int(parent):
        sys.exit(0)  # the parent died before prctl took effect
