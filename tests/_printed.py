"""Execution ids a child process printed, found even when other output shares their line.

A script prints ``handle.exec_id`` on its main thread while the flow runs on another:
the flow's own ``print`` can land between the id and its newline.
"""

from __future__ import annotations

import re

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def printed_exec_id(output: str) -> str:
    """The first execution id (a UUID) in ``output``; AssertionError if none."""
    found = _UUID.search(output)
    assert found is not None, f"no execution id in the output:\n{output}"
    return found.group(0)
