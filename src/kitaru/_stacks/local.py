"""The ``local`` stack: executions run on threads of the submitting process.

Threads are non-daemon on purpose: a script that submits executions and then
returns normally waits for them at interpreter exit instead of losing them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: Runner threads are named this plus the execution id's first 8 characters.
RUNNER_THREAD_PREFIX = "kitaru-exec-"


def launch_local(exec_id: str, job: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=job, name=f"{RUNNER_THREAD_PREFIX}{exec_id[:8]}", daemon=False)
    thread.start()
    return thread
