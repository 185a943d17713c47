"""Ledgers and crashing children for the adapter tests.

Flow modules here note what really ran (a node, a model request, a tool) as
lines of a ledger file named by ``KT_LEDGER``, so counts hold across processes.
A child started by :func:`crash_child` hangs where ``KT_HANG_IN`` says and is
SIGKILLed there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests._printed import printed_exec_id
from tests.recovery._rc_support import child_env, wait_for, wait_lease_expired


def note(what: str) -> None:
    with open(os.environ["KT_LEDGER"], "a", encoding="utf-8") as ledger:
        ledger.write(what + "\n")


def hang_if(where: str) -> None:
    """In a crash test's child: note it and hang here until killed."""
    if os.environ.get("KT_HANG_IN") == where:
        note(f"{where} hanging")
        time.sleep(120)


def ledger(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(line for line in path.read_text().splitlines() if line)


def crash_child(code: str, *, cwd: Path, ledger_path: Path, hang_in: str, **env: str) -> str:
    """Run ``code`` (prints the exec id first) in a child, SIGKILL it once it hangs in
    ``hang_in``; returns the exec id once the dead runner's lease has expired."""
    environment = child_env(KT_LEDGER=str(ledger_path), KT_HANG_IN=hang_in, **env)
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        marker = f"{hang_in} hanging"
        wait_for(
            lambda: ledger(ledger_path)[marker] > 0 or child.poll() is not None,
            what=f"the child to hang in {hang_in!r}",
        )
        os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, f"child exited early:\n{out}\n{err}"
    exec_id = printed_exec_id(out)
    wait_lease_expired(exec_id)
    return exec_id
