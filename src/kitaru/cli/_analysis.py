"""``kitaru executions statistics|diff|diff-matrix|cohort``: Kitaru 0.21's analysis commands.

Registered on the ``executions`` sub-app (``register()``, called from ``_app``).
Each prints through the shared output layer: Rich tables for people, the
``-o json`` envelope for scripts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kitaru.cli._output import (
    MAX_COUNT,
    OutputFormat,
    OutputOption,
    command,
    styled_status,
)

if TYPE_CHECKING:
    from kitaru.analysis import CohortDiff, ExecutionDiff, ExecutionStatistics


def _client() -> Any:
    from kitaru.client import KitaruClient

    return KitaruClient()


def _short(value: str | None) -> str:
    return "-" if value is None else value[:8]


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"


# --- statistics ------------------------------------------------------------------------------


def _render_statistics(
    stats: ExecutionStatistics, groups: list[dict[str, Any]], page: int, console: Console
) -> None:
    if not groups:
        console.print("No executions match." if page == 1 else "No groups on this page.")
        return
    key_names = list(groups[0]["keys"])
    metric_names = list(groups[0]["metrics"])
    table = Table(show_header=True, header_style="bold")
    for name in key_names:
        table.add_column(escape(name))
    table.add_column("executions", justify="right")
    for name in metric_names:
        table.add_column(escape(name), justify="right")
    for group in groups:
        keys = ["-" if v is None else escape(str(v)) for v in group["keys"].values()]
        metrics = [_number(v) for v in group["metrics"].values()]
        table.add_row(*keys, str(group["execution_count"]), *metrics)
    console.print(table)
    footer = f"{len(groups)} of {stats.group_count} groups (page {page})."
    if stats.truncated:
        footer += " Truncated by --max-groups."
    console.print(footer, style="dim")


def statistics(
    group_by: Annotated[
        list[str] | None,
        typer.Option(
            "--group-by",
            metavar="G",
            help="status, flow, stack, tag, time:<hour|day|week|month> or metadata:<key>; "
            "repeatable.",
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            metavar="M",
            help="NAME:<duration|step_count|cached_step_count|output_artifact_count>:<avg|sum|"
            "min|max> or NAME:metadata:KEY:<agg>; repeatable.",
        ),
    ] = None,
    flow: Annotated[str | None, typer.Option("--flow", help="Only this flow's executions.")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="Only executions with this status; repeatable."),
    ] = None,
    stack: Annotated[
        str | None, typer.Option("--stack", help="Only this stack's executions.")
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Only executions with this tag (all given); repeatable."),
    ] = None,
    max_groups: Annotated[
        int, typer.Option("--max-groups", help="At most this many groups (1-10000).")
    ] = 1000,
    page: Annotated[
        int,
        typer.Option("--page", min=1, max=MAX_COUNT, help="Which page of groups (1-based)."),
    ] = 1,
    size: Annotated[
        int, typer.Option("--size", min=1, max=MAX_COUNT, help="Groups per page.")
    ] = 20,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Count executions by group, with aggregated metrics; largest groups first."""
    with command("executions statistics", output) as out:
        stats = _client().executions.statistics(
            group_by=group_by or (),
            metrics=metric or (),
            flow=flow,
            status=status or None,
            stack=stack,
            tags=tag or None,
            max_groups=max_groups,
        )
        groups = [g.to_dict() for g in stats.groups[(page - 1) * size : page * size]]
        out.item(
            {"groups": groups, "truncated": stats.truncated, "group_count": stats.group_count},
            lambda console: _render_statistics(stats, groups, page, console),
        )


# --- diff -----------------------------------------------------------------------------------


def _delta_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}ms"


def _render_diff(result: ExecutionDiff, console: Console) -> None:
    console.print(f"Original: {escape(result.original_exec_id)}", style="bold")
    for replay_id, diffs in result.compared:
        table = Table(title=f"vs {escape(replay_id)}", show_header=True, header_style="bold")
        for column in ("checkpoint", "original call", "replay call", "status", "Δ duration"):
            table.add_column(column)
        table.add_column("artifacts")
        for entry in diffs:
            if entry.status_match:
                status = styled_status(entry.replay_status or "-")
            else:
                status = (
                    f"{styled_status(entry.original_status or 'missing')} → "
                    f"{styled_status(entry.replay_status or 'missing')}"
                )
            changed = sorted(r for r, (a, b) in entry.artifact_hashes.items() if a != b)
            artifacts = (
                "[green]same[/green]"
                if not changed
                else "[yellow]changed:[/yellow] " + escape(", ".join(changed))
            )
            table.add_row(
                escape(entry.name),
                escape(entry.original_call_id or "-"),
                escape(entry.replay_call_id or "-"),
                status,
                _delta_ms(entry.duration_delta_ms),
                artifacts,
            )
        console.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]Warning:[/yellow] {escape(warning)}", soft_wrap=True)


def diff(
    original: Annotated[str, typer.Argument(metavar="ORIGINAL", help="The source execution.")],
    replays: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[REPLAY...]",
            help="Executions to compare with it (default: all of its replays).",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Compare an execution with its replays, checkpoint by checkpoint."""
    with command("executions diff", output) as out:
        from kitaru.analysis import diff as compute

        result = compute(original, *(replays or []), client=_client())
        out.item(result.to_dict(), lambda console: _render_diff(result, console))


def _render_matrix(matrix: CohortDiff, console: Console) -> None:
    ids = [row.original_exec_id for row in matrix.rows]
    table = Table(
        title="Differing checkpoints",
        show_header=True,
        header_style="bold",
    )
    table.add_column("")
    for exec_id in ids:
        table.add_column(escape(_short(exec_id)), justify="right")
    for row in matrix.rows:
        counts = {
            replay_id: sum(
                1
                for d in diffs
                if not d.status_match or any(a != b for a, b in d.artifact_hashes.values())
            )
            for replay_id, diffs in row.compared
        }
        cells = ["·" if other == row.original_exec_id else str(counts[other]) for other in ids]
        table.add_row(escape(_short(row.original_exec_id)), *cells)
    console.print(table)


def diff_matrix(
    exec_ids: Annotated[
        list[str], typer.Argument(metavar="ID...", help="Executions to compare pairwise.")
    ],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Compare every given execution with every other one."""
    with command("executions diff-matrix", output) as out:
        from kitaru.analysis import diff_matrix as compute

        matrix = compute(exec_ids, client=_client())
        out.item(matrix.to_dict(), lambda console: _render_matrix(matrix, console))


# --- cohort ---------------------------------------------------------------------------------


def cohort(
    flow: Annotated[str, typer.Option("--flow", help="The flow (its name).")],
    at: Annotated[
        str, typer.Option("--at", help="Only executions with this checkpoint (name or call id).")
    ],
    deployment: Annotated[
        str | None, typer.Option("--deployment", help="Kitaru 0.21 option; not supported yet.")
    ] = None,
    deployment_version: Annotated[
        str | None,
        typer.Option("--deployment-version", help="Kitaru 0.21 option; not supported yet."),
    ] = None,
    order_by: Annotated[
        str,
        typer.Option(
            "--order-by",
            help="started_at, duration, display_cost_usd or total_tokens; '-' = descending.",
        ),
    ] = "-started_at",
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_COUNT, help="At most this many executions.")
    ] = 50,
    since: Annotated[
        str | None, typer.Option("--since", help="Started at or after (ISO 8601).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Started at or before (ISO 8601).")
    ] = None,
    max_scan: Annotated[
        int,
        typer.Option(
            "--max-scan",
            min=1,
            max=MAX_COUNT,
            help="Read at most this many of the newest executions.",
        ),
    ] = 500,
    include_failed: Annotated[
        bool, typer.Option("--include-failed", help="Failed executions too (not only completed).")
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Select the executions of a flow to replay from a checkpoint (replay takes the ids)."""
    with command("executions cohort", output) as out:
        from kitaru.analysis import cohort as build

        query = build(
            flow=flow,
            at=at,
            deployment=deployment,
            deployment_version=deployment_version,
            order_by=order_by,
            limit=limit,
            status=["completed", "failed"] if include_failed else "completed",
            since=since,
            until=until,
            client=_client(),
        )
        result = query.resolve(max_scan=max_scan)

        def render(console: Console) -> None:
            for exec_id in result.exec_ids:
                console.print(escape(exec_id))
            summary = (
                f"{result.ranked} of {result.matched} matching executions of flow "
                f"{result.flow!r} at {result.at!r} ({result.scanned} scanned"
                + (", scan cut by --max-scan" if result.partial else "")
                + f"), ordered by {result.order_by}."
            )
            console.print(escape(summary), style="dim", soft_wrap=True)

        out.item(result.to_json(), render)


def register(app: typer.Typer) -> None:
    """Add the analysis commands to the ``executions`` group."""
    app.command("statistics")(statistics)
    app.command("diff")(diff)
    app.command("diff-matrix")(diff_matrix)
    app.command("cohort")(cohort)
