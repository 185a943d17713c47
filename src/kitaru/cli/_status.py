"""``kitaru status``: where Kitaru keeps its state and which settings are in effect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kitaru._version import __version__
from kitaru.cli._output import OutputFormat, OutputOption, command, redact_url
from kitaru.errors import KitaruError

_SETTING_KEYS = ("stack", "cache", "retries", "image")


def _project_root() -> Path | None:
    from kitaru._runtime.loader import find_project_root

    try:
        return find_project_root(Path.cwd().absolute())
    except OSError:
        return None


def collect_status() -> dict[str, Any]:
    """Everything ``kitaru status`` shows, as plain JSON-able data."""
    from kitaru._paths import config_dir, global_config_file
    from kitaru._stacks import current_stack
    from kitaru.config import (
        find_pyproject,
        resolve_artifacts_root,
        resolve_settings,
        resolve_store_location,
    )

    stack = current_stack()
    settings: dict[str, Any] | None = None
    settings_error: dict[str, str] | None = None
    try:
        resolved = resolve_settings(run={}, decorator={})
    except KitaruError as exc:
        # Show everything else; a broken setting is exactly what status is for.
        settings_error = {"type": type(exc).__name__, "message": str(exc)}
    else:
        values: dict[str, Any] = {
            "stack": resolved.stack,
            "cache": resolved.cache,
            "retries": resolved.retries,
            "image": resolved.image,
        }
        settings = {
            key: {"value": values[key], "source": resolved.sources.get(key, "default")}
            for key in _SETTING_KEYS
        }
    store_url, store_source = resolve_store_location()
    connection = _connection()
    # Commands read through the server when logged in to one: its problem is theirs.
    store_problem = (
        _store_problem(store_url, store_source) if connection is None else connection["problem"]
    )
    pyproject = find_pyproject()
    project = _project_root()
    return {
        "version": __version__,
        "store_url": redact_url(store_url),
        "store_problem": store_problem,
        "artifacts_root": resolve_artifacts_root(store_url),
        "config_dir": str(config_dir()),
        "config_file": str(global_config_file()),
        "active_stack": {"id": stack.id, "name": stack.name, "kind": stack.kind},
        "active_stack_problem": missing_active_stack_problem(),
        "settings": settings,
        "settings_error": settings_error,
        "pyproject": None if pyproject is None else str(pyproject),
        "project_root": None if project is None else str(project),
        "connection": connection,
    }


def _store_problem(store_url: str, source: str | None) -> str | None:
    """Why commands cannot use the store (what `executions list` would say), or None.

    Nothing is created or migrated: a store that does not exist yet is not a problem
    unless the user named it (reading commands refuse it then).
    """
    from kitaru._store.engine import check_store

    try:
        check_store(store_url, source)
    except KitaruError as exc:
        return str(exc)
    return None


def missing_active_stack_problem() -> str | None:
    """A warning when the persisted active stack names no stack (runs then use 'local')."""
    from kitaru._stacks.registry import LOCAL_STACK_NAME, missing_active_stack

    missing = missing_active_stack()
    if missing is None:
        return None
    return (
        f"The active stack {missing!r} set in the global config does not exist (deleted, "
        f"or the config was edited): new runs use {LOCAL_STACK_NAME!r} instead. Choose "
        f"a stack with `kitaru stack use NAME`, or create it with "
        f"`kitaru stack create {missing}`."
    )


def _connection() -> dict[str, Any] | None:
    """The Kitaru server this machine talks to (never the key), or None; its problem
    if it is set up wrongly or does not answer as a Kitaru server with this key."""
    from kitaru.client._remote import check_connection
    from kitaru.client._remote_config import current_connection

    try:
        found = current_connection()
    except KitaruError as exc:
        return {"url": None, "source": None, "problem": str(exc)}
    if found is None:
        return None
    problem: str | None = None
    try:
        check_connection(found)
    except KitaruError as exc:
        problem = str(exc)
    return {"url": found.url, "source": found.source, "problem": problem}


def _render(data: dict[str, Any], console: Console) -> None:
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    stack = data["active_stack"]
    project = data["project_root"]
    rows = [
        ("Kitaru", data["version"]),
        ("Store", data["store_url"]),
        ("Artifacts", data["artifacts_root"]),
        ("Config dir", data["config_dir"]),
        ("Active stack", f"{stack['name']} ({stack['kind']}, {stack['id']})"),
        ("pyproject.toml", data["pyproject"] or "none found (cwd and parents)"),
        ("Project root", project or "not a Kitaru project (run `kitaru init` to mark one)"),
    ]
    connection = data.get("connection")
    if connection is not None:
        # The problem (also a broken login setting, with no URL) shows on the next line.
        shown = f"{connection['url']} (from {connection['source']})" if connection["url"] else "-"
        rows.insert(1, ("Server", shown))
    # Commands use the server when logged in to one, else the store: its problem shows there.
    used = "Server" if connection is not None else "Store"
    for label, value in rows:
        info.add_row(label, escape(str(value)))
        if label == used and data["store_problem"]:
            info.add_row("", f"[red]{escape(data['store_problem'])}[/red]")
        if label == "Active stack" and data["active_stack_problem"]:
            info.add_row("", f"[yellow]{escape(data['active_stack_problem'])}[/yellow]")
    console.print(info)
    console.print()
    if data["settings"] is None:
        error = data["settings_error"] or {}
        console.print(
            f"[red]Settings cannot be resolved:[/red] {escape(str(error.get('message')))}"
        )
        return
    console.print("Settings in effect for a new run:")
    table = Table()
    table.add_column("Setting", style="bold")
    table.add_column("Value")
    table.add_column("Source")
    for key in _SETTING_KEYS:
        entry = data["settings"][key]
        value = entry["value"]
        shown = "-" if value is None else str(value)
        table.add_row(key, escape(shown), escape(str(entry["source"])))
    console.print(table)


def status(output: OutputOption = OutputFormat.TEXT) -> None:
    """Show the store, artifact location, active stack and the settings in effect.

    For each of stack, cache, retries and image it names the source that set it:
    configure(), a KITARU_* environment variable, [tool.kitaru] in pyproject.toml,
    the active stack (`kitaru stack use`) or the built-in default.
    """
    with command("status", output) as out:
        data = collect_status()
        # 0.21's runtime snapshot names (as `kitaru info` has them), beside our own.
        item = {"sdk_version": data["version"], "config_directory": data["config_dir"], **data}
        out.item(item, lambda console: _render(data, console))


def register(app: typer.Typer) -> None:
    app.command("status")(status)
