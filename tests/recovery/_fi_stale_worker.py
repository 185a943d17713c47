"""A ``kitaru worker`` that loses one race for an orphan: ``python _fi_stale_worker.py``.

Its first poll of the store is taken before another process claims the orphan
(the ordinary race between two workers polling the same store), and served to
``run_worker`` only after that claim. Protocol: prints ``READY <n orphans seen>``
after that read, waits for a ``GO`` line on stdin, then runs
``kitaru.worker.run_worker(poll_interval=0.2)`` (logging to stderr) until stdin
has another line or closes.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

from kitaru import worker
from kitaru._backend import get_backend


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s", stream=sys.stderr)
    store = get_backend().store
    stale = store.orphaned()
    os.write(sys.stdout.fileno(), f"READY {len(stale)}\n".encode())
    if sys.stdin.readline().strip() != "GO":
        return 1
    fresh = store.orphaned
    served: list[bool] = []

    def orphaned(**kwargs: Any) -> Any:
        if not served:
            served.append(True)
            return stale
        return fresh(**kwargs)

    store.orphaned = orphaned  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(
        target=worker.run_worker, kwargs={"poll_interval": 0.2, "stop": stop}, daemon=True
    )
    thread.start()
    sys.stdin.readline()
    stop.set()
    thread.join(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
