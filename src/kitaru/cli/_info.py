"""``kitaru info``: a snapshot of this Kitaru installation, for bug reports.

The item carries Kitaru 0.21's keys (``sdk_version``, ``connection``,
``config_directory``, ``active_stack``, ...) plus the versions of Python, the
platform and Kitaru's main packages; ``--all-packages`` lists every installed
distribution, ``--packages NAME`` the ones named. ``--file PATH`` also writes the
JSON item there (the file is what a bug report attaches).
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kitaru.cli._output import OutputFormat, OutputOption, UsageProblem, command, dumps
from kitaru.errors import KitaruUsageError

#: The distributions Kitaru's behaviour depends on; shown by default.
CORE_PACKAGES = ("kitaru", "sqlalchemy", "alembic", "fsspec", "typer", "rich", "cloudpickle")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _packages(*, every: bool, named: list[str]) -> dict[str, str | None]:
    if every:
        found = {
            (dist.metadata["Name"] or "").lower(): dist.version for dist in metadata.distributions()
        }
        return dict(sorted((k, v) for k, v in found.items() if k))
    names = named or list(CORE_PACKAGES)
    return {name: _version(name) for name in names}


def _package_name(name: str) -> str:
    """A ``--packages`` value: a distribution name (blank is refused, not looked up)."""
    if not name.strip():
        raise UsageProblem(
            "--packages takes a package name (e.g. --packages sqlalchemy), got an empty one."
        )
    return name.strip()


def collect_info(*, every: bool, named: list[str]) -> dict[str, Any]:
    from kitaru.cli._status import collect_status
    from kitaru.config import resolve_store_location

    status = collect_status()
    _url, source = resolve_store_location()
    scheme = status["store_url"].split(":", 1)[0].split("+", 1)[0]
    connection = {
        "type": "local" if scheme == "sqlite" else scheme,
        "url": status["store_url"],
        "source": source or "default",
        "problem": status["store_problem"],
    }
    server = status.get("connection")
    if server is not None:  # logged in to a Kitaru server: that is the connection
        connection = {
            "type": "server",
            "url": server["url"],
            "source": server["source"],
            "problem": server["problem"],
        }
    return {
        "sdk_version": status["version"],
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "connection": connection,
        "config_directory": status["config_dir"],
        "config_file": status["config_file"],
        "artifacts_root": status["artifacts_root"],
        "active_stack": status["active_stack"],
        "active_stack_problem": status["active_stack_problem"],
        "project_root": status["project_root"],
        "pyproject": status["pyproject"],
        "settings": status["settings"],
        "packages": _packages(every=every, named=named),
    }


def _render(data: dict[str, Any], console: Console) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    stack = data["active_stack"]
    rows = [
        ("Kitaru", data["sdk_version"]),
        ("Python", f"{data['python_version']} ({data['python_executable']})"),
        ("Platform", data["platform"]),
        ("Connection", f"{data['connection']['type']}: {data['connection']['url']}"),
        ("", data["connection"]["problem"]),
        ("Config directory", data["config_directory"]),
        ("Artifacts", data["artifacts_root"]),
        ("Active stack", f"{stack['name']} ({stack['id']})"),
        ("", data["active_stack_problem"]),
        ("Project root", data["project_root"] or "-"),
    ]
    for label, value in rows:
        if label:
            grid.add_row(label, escape(str(value)))
        elif value:  # the problem of the row above
            grid.add_row(label, f"[red]{escape(str(value))}[/red]")
    console.print(grid)
    console.print()
    table = Table(title="Packages", title_justify="left")
    table.add_column("Package")
    table.add_column("Version")
    for name, version in data["packages"].items():
        table.add_row(escape(name), escape(version or "not installed"))
    console.print(table)


def info(
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Same as --all-packages.", show_default=False)
    ] = False,
    all_packages: Annotated[
        bool,
        typer.Option("--all-packages", help="List every installed package with its version."),
    ] = False,
    packages: Annotated[
        list[str] | None,
        typer.Option(
            "--packages",
            "-p",
            metavar="NAME",
            help="List this package's version (repeat for several).",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            metavar="PATH",
            help="Also write the snapshot as JSON to this file.",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Show this installation: versions, connection, config directory, active stack.

    Attach the output (or the --file written) to a bug report.
    """
    with command("info", output) as out:
        named = [_package_name(name) for name in packages or []]
        data = collect_info(every=all_ or all_packages, named=named)
        if file is not None:
            try:
                file.write_text(dumps(data) + "\n", encoding="utf-8")
            except OSError as exc:
                raise KitaruUsageError(
                    f"Cannot write the snapshot to {file}: {exc}. Pass a writable --file path."
                ) from exc
        out.item(data, lambda console: _render(data, console))
        if file is not None:
            out.note(f"Wrote the snapshot to {file}.")


def register(app: typer.Typer) -> None:
    app.command("info")(info)
