"""Entry point of an isolated checkpoint's process (see ``isolated``).

A module of its own so that ``python -m`` does not re-execute a module the
``kitaru`` package has already imported.
"""

from __future__ import annotations

import signal
import sys

from kitaru._parent_death import die_with_parent
from kitaru._runtime.isolated import ENV_PARENT, child_main

if __name__ == "__main__":
    # SIGKILL (not a signal the call's code could catch or ignore) when the runner dies:
    # a resume runs the call again, and two copies must not overlap. (Only here, in a
    # process of its own: a Ray task runs child_main in a worker shared with others.)
    die_with_parent(ENV_PARENT, signal.SIGKILL)
    sys.exit(child_main(sys.argv[1:]))
