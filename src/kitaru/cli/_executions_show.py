"""How executions look in the terminal: the list table and one execution's details.

An execution may have tens of thousands of checkpoint calls; drawing every one
of them as a table row takes seconds and buries the interesting part. So the
timeline shows the counts by status and the first and last few calls, says how
many are hidden and how to see them (``--calls all`` / ``--calls N``); ``-o json``
always carries every call.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.markup import escape
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from kitaru._store import ExecutionStatus
from kitaru.cli._output import MAX_COUNT, UsageProblem, fmt_duration, fmt_time, styled_status

if TYPE_CHECKING:
    from kitaru.client._models import CheckpointCall, Execution

#: Calls shown from each end of a long timeline by default.
DEFAULT_CALLS = 10

CallsOption = Annotated[
    str,
    typer.Option(
        "--calls",
        metavar="N|all",
        help=(
            "How much of the checkpoint timeline to show: the first and last N calls "
            f"(default {DEFAULT_CALLS}), or 'all'. -o json always includes every call."
        ),
    ),
]


def parse_calls(value: str) -> int | None:
    """The ``--calls`` value: calls shown from each end, or None for all."""
    text = value.strip().lower()
    if text == "all":
        return None
    try:
        count = int(text)
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_COUNT:
        raise UsageProblem(
            f"--calls takes a number of calls (0 to {MAX_COUNT}) or 'all', got {value!r}."
        )
    return count


def _now() -> datetime:
    return datetime.now(tz=UTC)


def runner_died_waiting(execution: Execution) -> bool:
    """Waiting, but the runner that held it died (``Execution.is_orphaned`` of a waiting
    execution: a runner that lets go of a wait holds no lease), and nothing will notice
    an answer until input resumes it here, or ``resume``/a worker does."""
    return execution.status is ExecutionStatus.WAITING and execution.is_orphaned


def needs_worker(execution: Execution) -> bool:
    """Orphaned: running or waiting, but its runner died (shown as ``(orphaned)``)."""
    return execution.is_orphaned


def summary_item(execution: Execution) -> dict[str, Any]:
    """The ``executions list`` JSON item; ``is_orphaned`` also marks a dead waiting runner."""
    return {**execution.summary_dict(), "is_orphaned": needs_worker(execution)}


def execution_item(execution: Execution) -> dict[str, Any]:
    """The JSON item of one execution (``get``, ``resume``, ``retry``, ``input``, ...)."""
    return {**execution.to_dict(), "is_orphaned": needs_worker(execution)}


def exec_status(execution: Execution) -> str:
    from kitaru.cli._time_show import status_suffix

    if needs_worker(execution):
        return styled_status(execution.status.value, suffix=" (orphaned)")
    return styled_status(execution.status.value, suffix=status_suffix(execution))


def _exec_duration(execution: Execution) -> str:
    if execution.duration is not None:
        return fmt_duration(execution.duration)
    if execution.started_at is not None and not execution.status.is_finished:
        elapsed = (_now() - execution.started_at).total_seconds()
        return f"{fmt_duration(max(elapsed, 0.0))}…"
    return "-"


def _call_status_suffix(call: CheckpointCall) -> str:
    details: list[str] = []
    if call.metadata.get("overridden"):
        details.append("overridden")
    if call.source_exec_id:
        details.append(f"from {call.source_exec_id[:8]}")
    return f" ({', '.join(details)})" if details else ""


def _call_status(call: CheckpointCall) -> str:
    return styled_status(call.call_status.value, suffix=_call_status_suffix(call))


def _attempts(call: CheckpointCall) -> str:
    if not call.attempts:
        return "0" if call.call_status.value in ("cached", "reused") else "-"
    runs = len({a.run for a in call.attempts})
    failed = sum(1 for a in call.attempts if a.status is ExecutionStatus.FAILED)
    text = str(len(call.attempts))
    extras = []
    if failed:
        extras.append(f"{failed} failed")
    if runs > 1:
        extras.append(f"{runs} runs")
    return f"{text} ({', '.join(extras)})" if extras else text


def executions_table(executions: list[Execution]) -> Table:
    table = Table()
    table.add_column("Id", no_wrap=True)
    table.add_column("Flow")
    table.add_column("Status", no_wrap=True)
    table.add_column("Started", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    table.add_column("Checkpoints", justify="right")
    for execution in executions:
        table.add_row(
            escape(execution.exec_id),
            escape(execution.flow_name or "-"),
            exec_status(execution),
            fmt_time(execution.started_at),
            _exec_duration(execution),
            str(len(execution.checkpoints)),
        )
    return table


def call_counts(calls: Sequence[CheckpointCall]) -> str:
    """``10,000 calls: 9,990 completed, 10 failed`` (statuses in a fixed order)."""
    counts = Counter(call.call_status.value for call in calls)
    order = ("completed", "cached", "reused", "running", "failed")
    parts = [
        f"{counts[status]:,} {styled_status(status)}"
        for status in (*order, *sorted(set(counts) - set(order)))
        if counts[status]
    ]
    noun = "call" if len(calls) == 1 else "calls"
    return f"{len(calls):,} {noun}" + (f": {', '.join(parts)}" if parts else "")


def _window(total: int, calls: int | None) -> tuple[range, range]:
    """Indexes shown at the head and at the tail of a timeline of ``total`` calls."""
    if calls is None or total <= 2 * calls:
        return range(total), range(0)
    return range(calls), range(total - calls, total)


def timeline_table(execution: Execution, *, calls: int | None = DEFAULT_CALLS) -> Table:
    checkpoints = execution.checkpoints
    head, tail = _window(len(checkpoints), calls)
    hidden = len(checkpoints) - len(head) - len(tail)
    title = "Checkpoint timeline"
    if hidden:
        title += f" (first {len(head):,} and last {len(tail):,} of {len(checkpoints):,} calls)"
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("Call id", no_wrap=True)
    table.add_column("Checkpoint")
    table.add_column("Status", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    table.add_column("Attempts")
    table.add_column("Type")

    def add(index: int) -> None:
        call = checkpoints[index]
        table.add_row(
            str(index + 1),
            escape(call.call_id),
            escape(call.name),
            _call_status(call),
            fmt_duration(call.duration),
            _attempts(call),
            escape(call.checkpoint_type or "-"),
        )

    for index in head:
        add(index)
    if hidden and tail:
        table.add_row("…", f"[dim]{hidden:,} more[/dim]", "", "", "", "", "")
    for index in tail:
        add(index)
    return table


#: Above this many rows the timeline is plain aligned text: a Rich table row costs
#: about half a millisecond, so 10,000 of them took seconds.
PLAIN_TIMELINE_ROWS = 500

_TIMELINE_COLUMNS = ("#", "Call id", "Checkpoint", "Status", "Duration", "Attempts", "Type")
_RIGHT_ALIGNED = frozenset({"#", "Duration"})


class PlainTimeline:
    """Every call of a long timeline as plain text lines (a Rich renderable)."""

    def __init__(self, execution: Execution) -> None:
        self.execution = execution

    def lines(self) -> list[str]:
        rows = [
            (
                str(index),
                call.call_id,
                call.name,
                call.call_status.value + _call_status_suffix(call),
                fmt_duration(call.duration),
                _attempts(call),
                call.checkpoint_type or "-",
            )
            for index, call in enumerate(self.execution.checkpoints, start=1)
        ]
        widths = [
            max(len(name), *(len(row[i]) for row in rows))
            for i, name in enumerate(_TIMELINE_COLUMNS)
        ]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                cell.rjust(width) if name in _RIGHT_ALIGNED else cell.ljust(width)
                for name, cell, width in zip(_TIMELINE_COLUMNS, cells, widths, strict=True)
            ).rstrip()

        total = len(rows)
        return [
            f"Checkpoint timeline (all {total:,} calls)",
            line(_TIMELINE_COLUMNS),
            "  ".join("-" * width for width in widths),
            *(line(row) for row in rows),
        ]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # Plain segments: no markup, measuring or wrapping per cell.
        yield Segment("\n".join(self.lines()) + "\n")


def _hidden_hint(execution: Execution, shown: int) -> str:
    total = len(execution.checkpoints)
    return (
        f"{total - shown:,} of {total:,} calls not shown: "
        f"`kitaru executions get {execution.exec_id} --calls all` shows every call, "
        "`--calls N` the first and last N, `-o json` all of them with their details."
    )


def usage_line(usage: dict[str, Any]) -> str:
    """``3 requests, 1,234 tokens (1,000 in / 234 out), $0.0012`` (what is known)."""
    requests = usage.get("call_count") or 0
    parts = [f"{requests} request{'s' if requests != 1 else ''}"]
    total = usage.get("total_tokens")
    if total is not None:
        detail = ""
        if usage.get("prompt_tokens") is not None and usage.get("completion_tokens") is not None:
            detail = f" ({usage['prompt_tokens']:,} in / {usage['completion_tokens']:,} out)"
        parts.append(f"{total:,} tokens{detail}")
    cost = usage.get("cost_usd")
    parts.append("cost unknown" if cost is None else f"${cost:.6f}".rstrip("0").rstrip("."))
    return ", ".join(parts)


def _settings_line(config: dict[str, Any]) -> str:
    parts = []
    for key in ("cache", "retries"):
        if key in config:
            parts.append(f"{key}={config[key]}")
    if config.get("image"):
        parts.append("image=" + json.dumps(config["image"], sort_keys=True))
    return ", ".join(parts) or "-"


def render_execution(
    execution: Execution, console: Console, *, calls: int | None = DEFAULT_CALLS
) -> None:
    """One execution: details, checkpoint counts, (a window of) its timeline, failure."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Execution", escape(execution.exec_id))
    grid.add_row("Flow", escape(execution.flow_name or "-"))
    grid.add_row("Status", exec_status(execution))
    grid.add_row("Stack", escape(execution.stack_name or "-"))
    grid.add_row("Started", fmt_time(execution.started_at))
    grid.add_row("Ended", fmt_time(execution.ended_at))
    grid.add_row("Duration", _exec_duration(execution))
    grid.add_row("Runs", str(execution.run_count))
    grid.add_row("Settings", escape(_settings_line(execution.config)))
    if execution.checkpoints:
        grid.add_row("Checkpoints", call_counts(execution.checkpoints))
    if execution.original_exec_id:
        grid.add_row("Replay of", escape(execution.original_exec_id))
    usage = execution.llm_usage_summary
    if usage:
        grid.add_row("LLM usage", escape(usage_line(usage)))
    from kitaru.cli._time_show import add_rows

    add_rows(grid, execution)
    if execution.metadata:
        grid.add_row(
            "Metadata", escape(json.dumps(execution.metadata, default=str, sort_keys=True))
        )
    # A dead waiting runner first: is_orphaned covers it too, but it needs an answer.
    if runner_died_waiting(execution):
        grid.add_row(
            "",
            "[yellow]Its runner died while waiting: answer with `kitaru executions input "
            f"{execution.exec_id}` (which resumes it here), or once answered run "
            f"`kitaru executions resume {execution.exec_id}` or `kitaru worker`.[/yellow]",
        )
    elif execution.is_orphaned:
        grid.add_row(
            "",
            "[yellow]Its runner stopped renewing its lease: resume it with "
            f"`kitaru executions resume {execution.exec_id}` or run `kitaru worker`.[/yellow]",
        )
    parts: list[Any] = [grid, Text("")]
    if execution.checkpoints:
        head, tail = _window(len(execution.checkpoints), calls)
        shown = [execution.checkpoints[i] for i in (*head, *tail)]
        if len(shown) > PLAIN_TIMELINE_ROWS and len(shown) == len(execution.checkpoints):
            parts.append(PlainTimeline(execution))
        elif shown:
            parts.append(timeline_table(execution, calls=calls))
        if len(shown) < len(execution.checkpoints):
            parts.append(Text(_hidden_hint(execution, len(shown)), style="dim"))
        with_metadata = [c for c in shown if c.metadata]
        if with_metadata:
            meta = Table(title="Checkpoint metadata", title_justify="left")
            meta.add_column("Call")
            meta.add_column("Metadata")
            for call in with_metadata:
                meta.add_row(
                    escape(call.call_id),
                    escape(json.dumps(call.metadata, default=str, sort_keys=True)),
                )
            parts.extend([Text(""), meta])
    else:
        parts.append(Text("No checkpoint calls recorded."))
    failure = execution.failure
    if failure is not None:
        failure_grid = Table.grid(padding=(0, 2))
        failure_grid.add_column(style="bold red")
        failure_grid.add_column()
        failure_grid.add_row("Failure", escape(failure.origin.value))
        if failure.checkpoint:
            failure_grid.add_row("Checkpoint", escape(failure.checkpoint))
        if failure.exception_type:
            failure_grid.add_row("Type", escape(failure.exception_type))
        failure_grid.add_row("Message", escape(failure.message or "-"))
        parts.extend([Text(""), failure_grid])
    console.print(Group(*parts))


__all__ = [
    "DEFAULT_CALLS",
    "CallsOption",
    "call_counts",
    "exec_status",
    "executions_table",
    "parse_calls",
    "render_execution",
    "timeline_table",
]
