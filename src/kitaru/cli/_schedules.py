"""``kitaru schedule ...``: create, list, show, pause, resume and delete cron schedules."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kitaru.cli._output import (
    OutputFormat,
    OutputOption,
    PageOption,
    SizeOption,
    UsageProblem,
    command,
    fmt_time,
    page_of,
)

if TYPE_CHECKING:
    from kitaru.schedules import Schedule, SchedulesAPI

app = typer.Typer(
    help=(
        "Manage cron schedules: each starts an execution of a flow at every slot of its "
        "cron expression. `kitaru worker` fires them (each slot exactly once, however many "
        "workers run)."
    ),
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Schedule name.", show_default=False)]


def _api() -> SchedulesAPI:
    from kitaru.client import KitaruClient

    return KitaruClient().schedules


def _render(schedule: Schedule, console: Console) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Schedule", escape(schedule.name))
    grid.add_row("Flow", escape(f"{schedule.flow_name} ({schedule.flow_id or '-'})"))
    grid.add_row("Cron", escape(f"{schedule.cron} ({schedule.timezone})"))
    grid.add_row("Inputs", escape(json.dumps(schedule.inputs, sort_keys=True)))
    grid.add_row("Stack", escape(schedule.stack or "(the active stack)"))
    grid.add_row("Missed slots", schedule.missed)
    grid.add_row("State", "paused" if schedule.paused else "active")
    grid.add_row("Next run", fmt_time(schedule.next_run_at) if schedule.next_run_at else "-")
    console.print(grid)


@app.command("create")
def create(
    name: NameArg,
    flow: Annotated[
        str,
        typer.Option(
            "--flow",
            metavar="MODULE:FLOW",
            help="The flow: module:flow (importable from here) or path/to/file.py:flow.",
            show_default=False,
        ),
    ],
    cron: Annotated[
        str,
        typer.Option(
            "--cron",
            metavar="EXPR",
            help="Cron expression: '0 7 * * *' (5 fields), or 6 with seconds first.",
            show_default=False,
        ),
    ],
    timezone: Annotated[
        str, typer.Option("--timezone", metavar="TZ", help="IANA time zone of the cron.")
    ] = "UTC",
    inputs: Annotated[
        str | None,
        typer.Option(
            "--inputs",
            metavar="JSON",
            help="The flow's keyword arguments, as a JSON object.",
            show_default=False,
        ),
    ] = None,
    stack: Annotated[
        str | None,
        typer.Option("--stack", metavar="STACK", help="Stack to run on.", show_default=False),
    ] = None,
    missed: Annotated[
        str,
        typer.Option(
            "--missed",
            metavar="POLICY",
            help="Slots that passed while no worker ran: skip them, or run_once for all.",
        ),
    ] = "skip",
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Create a schedule: start FLOW at every slot of --cron (fired by `kitaru worker`)."""
    with command("schedule create", output) as out:
        parsed: dict[str, Any] | None = None
        if inputs is not None:
            try:
                parsed = json.loads(inputs)
            except json.JSONDecodeError as exc:
                raise UsageProblem(f"--inputs is not valid JSON: {exc}.") from None
            if not isinstance(parsed, dict):
                raise UsageProblem(
                    "--inputs must be a JSON object of the flow's keyword arguments, "
                    'e.g. \'{"topic": "news"}\'.'
                )
        schedule = _api().create(
            name,
            flow=flow,
            cron=cron,
            timezone=timezone,
            inputs=parsed,
            stack=stack,
            missed=missed,
        )

        def render(console: Console) -> None:
            console.print(f"Created schedule [bold]{escape(schedule.name)}[/bold].")
            _render(schedule, console)
            console.print("Run `kitaru worker` to fire it.", style="dim")

        out.item(schedule.to_dict(), render)


@app.command("list")
def list_schedules(
    page: PageOption = None, size: SizeOption = None, output: OutputOption = OutputFormat.TEXT
) -> None:
    """List schedules with their next run."""
    with command("schedule list", output) as out:
        schedules = page_of(_api().list(), page, size)

        def render(console: Console) -> None:
            if not schedules:
                console.print("No schedules. Create one with `kitaru schedule create`.")
                return
            table = Table()
            for column in ("Name", "Flow", "Cron", "Timezone", "State", "Next run"):
                table.add_column(column)
            for s in schedules:
                table.add_row(
                    escape(s.name),
                    escape(s.flow_name),
                    escape(s.cron),
                    escape(s.timezone),
                    "paused" if s.paused else "active",
                    fmt_time(s.next_run_at) if s.next_run_at else "-",
                )
            console.print(table)

        out.items([s.to_dict() for s in schedules], render)


@app.command("show")
def show(name: NameArg, output: OutputOption = OutputFormat.TEXT) -> None:
    """Show one schedule."""
    with command("schedule show", output) as out:
        schedule = _api().get(name)
        out.item(schedule.to_dict(), lambda console: _render(schedule, console))


@app.command("pause")
def pause(name: NameArg, output: OutputOption = OutputFormat.TEXT) -> None:
    """Stop firing a schedule until `kitaru schedule resume`."""
    with command("schedule pause", output) as out:
        schedule = _api().pause(name)
        out.item(
            schedule.to_dict(),
            lambda console: console.print(f"Paused schedule {escape(name)}."),
        )


@app.command("resume")
def resume(name: NameArg, output: OutputOption = OutputFormat.TEXT) -> None:
    """Fire a paused schedule again, from now on (slots while paused never run)."""
    with command("schedule resume", output) as out:
        schedule = _api().resume(name)
        out.item(
            schedule.to_dict(),
            lambda console: console.print(f"Resumed schedule {escape(name)}."),
        )


@app.command("delete")
def delete(name: NameArg, output: OutputOption = OutputFormat.TEXT) -> None:
    """Delete a schedule (the executions it started stay)."""
    with command("schedule delete", output) as out:
        _api().delete(name)
        out.item(
            {"name": name, "deleted": True},
            lambda console: console.print(f"Deleted schedule {escape(name)}."),
        )
