"""``kitaru stack ...``: list, inspect, create, activate and delete stacks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

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
    page_of,
)
from kitaru.cli._stack_file import read_stack_file

app = typer.Typer(
    help=(
        "Manage stacks: named places where executions run. The active stack is the "
        "default for every new run (`local`, threads in the calling process, is built in)."
    ),
    no_args_is_help=True,
)

NameArg = Annotated[
    str, typer.Argument(metavar="NAME", help="Stack name (or id).", show_default=False)
]


def _info_dict(info: Any) -> dict[str, Any]:
    data = dataclasses.asdict(info)
    # 0.21's key: a managed stack is one Kitaru provisioned itself (ours are all the user's).
    data.setdefault("is_managed", False)
    return data


def _stacks_table(stacks: list[dict[str, Any]]) -> Table:
    table = Table()
    table.add_column("", width=1)
    table.add_column("Name", style="bold")
    table.add_column("Kind")
    table.add_column("Id", no_wrap=True)
    for stack in stacks:
        table.add_row(
            "*" if stack["is_active"] else "",
            escape(stack["name"]),
            escape(stack["kind"]),
            stack["id"],
        )
    return table


def _render_one(data: dict[str, Any], console: Console, *, title: str | None = None) -> None:
    if title:
        console.print(title)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key in ("name", "id", "kind", "is_active", "created_at"):
        if key in data:
            value = data[key]
            grid.add_row(
                key.replace("_", " ").capitalize(), escape("-" if value is None else str(value))
            )
    config = data.get("config")
    if config:
        grid.add_row("Config", escape(json.dumps(config, sort_keys=True)))
    console.print(grid)


@app.command("list")
def list_stacks(
    page: PageOption = None, size: SizeOption = None, output: OutputOption = OutputFormat.TEXT
) -> None:
    """List stacks, a page at a time; the active one is marked with *."""
    with command("stack list", output) as out:
        from kitaru._stacks import list_stacks as _list

        stacks = [_info_dict(s) for s in page_of(_list(), page, size)]

        def render(console: Console) -> None:
            console.print(_stacks_table(stacks))

        out.items(stacks, render)


@app.command("current")
def current(output: OutputOption = OutputFormat.TEXT) -> None:
    """Show the active stack (the default for new runs)."""
    with command("stack current", output) as out:
        from kitaru._stacks import current_stack
        from kitaru.cli._status import missing_active_stack_problem

        problem = missing_active_stack_problem()
        data = {**_info_dict(current_stack()), "problem": problem}

        def render(console: Console) -> None:
            name, kind = escape(data["name"]), escape(data["kind"])
            console.print(f"Active stack: [bold]{name}[/bold] ({kind}, {data['id']})")
            if problem:
                out.note(f"Warning: {escape(problem)}")

        out.item(data, render)


@app.command("show")
def show(name: NameArg, output: OutputOption = OutputFormat.TEXT) -> None:
    """Show one stack: its id, kind, configuration and whether it is active."""
    with command("stack show", output) as out:
        from kitaru._stacks import get_stack, get_stack_record

        info = get_stack(name)
        record = get_stack_record(name)
        data = {
            **record,
            "is_active": info.is_active,
            # 0.21's keys: our stacks are a kind plus settings, with no separate components.
            "stack_type": record.get("kind"),
            "components": {},
        }
        out.item(data, lambda console: _render_one(data, console))


@app.command("use")
def use(name: NameArg, output: OutputOption = OutputFormat.TEXT) -> None:
    """Make a stack the active one: every later run uses it unless told otherwise."""
    with command("stack use", output) as out:
        from kitaru._stacks import use_stack

        data = _info_dict(use_stack(name))
        out.item(
            data,
            lambda console: console.print(
                f"Active stack is now [bold]{escape(data['name'])}[/bold]."
            ),
        )


@app.command("create")
def create(
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME",
            help="Name of the new stack (letters, digits, '-', '_'); optional with --file "
            "when the file names it.",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            metavar="PATH",
            help="A YAML (or JSON) file with the stack's settings: name, type, activate, "
            "labels, address, artifact_store, runtime_env, num_cpus, num_gpus, resources. "
            "Options given here win over the file's values.",
            show_default=False,
        ),
    ] = None,
    activate: Annotated[
        bool | None,
        typer.Option(
            "--activate/--no-activate",
            help="Make the new stack the active one (the default); --no-activate keeps "
            "the current active stack.",
            show_default=False,
        ),
    ] = None,
    stack_type: Annotated[
        str | None,
        typer.Option(
            "--type",
            "-t",
            metavar="TYPE",
            help="Kind of stack (default: local). Available: local (executions run on "
            "threads of the calling process), ray (executions run on a Ray cluster; needs "
            "--address).",
            show_default=False,
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="ADDR",
            help="Ray stacks: the cluster, as ray.init takes it: auto, HOST:PORT of the "
            "GCS, or ray://HOST:10001 (Ray Client).",
            show_default=False,
        ),
    ] = None,
    artifact_store: Annotated[
        str | None,
        typer.Option(
            "--artifact-store",
            metavar="URI",
            help="Ray stacks: the artifact root every node reaches (an fsspec URL such as "
            "s3://bucket/kitaru); runs check that Kitaru is configured with it.",
            show_default=False,
        ),
    ] = None,
    runtime_env: Annotated[
        str | None,
        typer.Option(
            "--runtime-env",
            metavar="JSON",
            help="Ray stacks: a Ray runtime environment (JSON object) merged under the "
            "one Kitaru derives from the flow's image settings.",
            show_default=False,
        ),
    ] = None,
    num_cpus: Annotated[
        float | None,
        typer.Option(
            "--num-cpus",
            metavar="N",
            help="Ray stacks: CPUs each execution and isolated checkpoint asks for.",
            show_default=False,
        ),
    ] = None,
    num_gpus: Annotated[
        float | None,
        typer.Option(
            "--num-gpus",
            metavar="N",
            help="Ray stacks: GPUs each execution and isolated checkpoint asks for.",
            show_default=False,
        ),
    ] = None,
    resources: Annotated[
        str | None,
        typer.Option(
            "--resources",
            metavar="JSON",
            help="Ray stacks: custom Ray resources each execution and isolated checkpoint "
            "asks for, e.g. '{\"accelerator_type:A100\": 1}'.",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Create a named stack and make it the active one (unless --no-activate).

    Its settings come from the options, or from a YAML file (--file) whose values the
    options override.
    """
    with command("stack create", output) as out:
        from kitaru._stacks import create_stack, current_stack

        given = {
            "name": name,
            "activate": activate,
            "type": stack_type,
            "address": address,
            "artifact_store": artifact_store,
            "runtime_env": runtime_env,
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            "resources": resources,
        }
        settings = {} if file is None else read_stack_file(file)
        settings.update({key: value for key, value in given.items() if value is not None})
        if settings.get("name") is None:
            raise UsageProblem(
                "Missing NAME: pass the new stack's name"
                + (" (or set 'name' in the file)." if file is not None else " (or --file).")
            )
        previous = current_stack().name
        info = create_stack(
            settings["name"],
            activate=settings.get("activate", True),
            labels=settings.get("labels"),
            kind=str(settings.get("type", "local")).strip().lower(),
            address=settings.get("address"),
            artifact_store=settings.get("artifact_store"),
            runtime_env=settings.get("runtime_env"),
            num_cpus=_whole(settings.get("num_cpus")),
            num_gpus=_whole(settings.get("num_gpus")),
            resources=settings.get("resources"),
        )
        data = {
            **_info_dict(info),
            "previous_active_stack": previous,
            "components_created": [],
            "stack_type": info.kind,
        }

        def render(console: Console) -> None:
            console.print(f"Created stack [bold]{escape(data['name'])}[/bold] ({data['id']}).")
            if data["is_active"]:
                console.print(f"It is now the active stack (was [bold]{escape(previous)}[/bold]).")

        out.item(data, render)


def _whole(value: Any) -> Any:
    """2.0 from the command line is stored as 2 (what people typed); anything else is
    left for ``create_stack`` to check."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@app.command("delete")
def delete(
    name: NameArg,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Delete even the active stack ('local' becomes active again)."
        ),
    ] = False,
    recursive: Annotated[
        bool,
        typer.Option(
            "--recursive",
            help="Also delete the stack's components (accepted for Kitaru 0.21 scripts: "
            "Kitaru stacks have no separate components).",
        ),
    ] = False,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Delete a stack. The built-in 'local' stack cannot be deleted."""
    with command("stack delete", output) as out:
        from kitaru._stacks import current_stack, delete_stack, get_stack

        info = get_stack(name)
        delete_stack(name, recursive=recursive, force=force)
        active = current_stack()
        data = {
            **_info_dict(info),
            "is_active": False,  # it no longer exists (was_active says whether it was)
            "was_active": info.is_active,
            "deleted": True,
            "active_stack": active.name,
            "deleted_stack": info.name,
            "components_deleted": [],
            "new_active_stack": active.name,
            "recursive": recursive,
        }

        def render(console: Console) -> None:
            console.print(f"Deleted stack [bold]{escape(info.name)}[/bold].")
            if info.is_active:
                console.print(f"Active stack is now [bold]{escape(active.name)}[/bold].")

        out.item(data, render)
