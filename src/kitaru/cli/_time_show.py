"""What durable time adds to an execution's display: its sleep, parent, children, schedule."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from kitaru.cli._output import fmt_time
from kitaru.client import Execution


def status_suffix(execution: Execution) -> str:
    """`` (sleeping until ...)`` / `` (waiting for child ...)`` for a paused execution."""
    sleep = execution.pending_sleep
    if sleep is None:
        return ""
    if sleep.kind == "sleep":
        return f" (sleeping until {fmt_time(sleep.wake_at)})"
    return f" (waiting for child {sleep.child_exec_id})"


def add_rows(grid: Table, execution: Execution) -> None:
    """Rows of the ``executions get`` details grid."""
    sleep = execution.pending_sleep
    if sleep is not None and sleep.kind == "sleep":
        grid.add_row("Sleeping", f"{escape(sleep.sleep_id)} until {fmt_time(sleep.wake_at)}")
    if execution.parent_exec_id:
        grid.add_row("Parent", escape(execution.parent_exec_id))
    if execution.children:
        grid.add_row("Children", escape(", ".join(execution.children)))
    if execution.schedule_name:
        grid.add_row(
            "Schedule",
            f"{escape(execution.schedule_name)} (slot {fmt_time(execution.schedule_slot)})",
        )
    if execution.idempotency_key:
        grid.add_row("Execution key", escape(execution.idempotency_key))
