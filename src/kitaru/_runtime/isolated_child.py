"""Entry point of an isolated checkpoint's process (see ``isolated``).

A module of its own so that ``python -m`` does not re-execute a module the
``kitaru`` package has already imported.
"""

from __future__ import annotations

import sys

from kitaru._runtime.isolated import child_main

if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
