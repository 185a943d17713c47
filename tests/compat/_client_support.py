"""Helpers shared by the client compatibility tests."""

from __future__ import annotations

from typing import Any


def replay_id(result: Any) -> str:
    """The new execution's id: the only row of a ReplaySubmission (0.21), or an Execution.

    Accepts both while the client's replay moves to 0.21's ReplaySubmission.
    """
    rows = getattr(result, "results", None)
    return str(rows[0].replay_exec_id if rows is not None else result.exec_id)
