"""``kitaru log-store ...``: Kitaru 0.21's global runtime log backend setting."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kitaru.cli._output import OutputFormat, OutputOption, command

app = typer.Typer(
    help=(
        "Show or change the global runtime log store. Logs are always kept in the Kitaru "
        "store (`kitaru executions logs`); an external backend set here is recorded and "
        "shown, as Kitaru 0.21 did, but logs are not sent to it."
    ),
    no_args_is_help=True,
)


def _render(item: dict[str, Any], note: str | None = None) -> Any:
    def render(console: Console) -> None:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("Backend", escape(item["backend"]))
        grid.add_row("Endpoint", escape(item["endpoint"] or "-"))
        grid.add_row("API key", "set (hidden)" if item["api_key"] else "-")
        grid.add_row("Source", escape(item["source"]))
        grid.add_row("Logs kept in", escape(item["logs_kept_in"]))
        console.print(grid)
        if note:
            console.print(note, soft_wrap=True)

    return render


def _env_note(source: str) -> str | None:
    if source != "environment":
        return None
    return "KITARU_LOG_STORE_BACKEND is set: the environment wins over the user config while it is."


@app.command("set")
def set_backend(
    backend: Annotated[
        str,
        typer.Argument(metavar="BACKEND", help="Backend name, e.g. datadog.", show_default=False),
    ],
    endpoint: Annotated[
        str,
        typer.Option("--endpoint", help="The backend's http(s) URL.", show_default=False),
    ],
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", help="API key for the backend (never printed).", show_default=False
        ),
    ] = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Record an external log backend in the user config (it is shown, not used)."""
    from kitaru._log_store import set_log_store

    with command("log-store set", output) as out:
        item = set_log_store(backend, endpoint=endpoint, api_key=api_key).to_dict()
        out.item(item, _render(item, _env_note(item["source"])))


@app.command("show")
def show(output: OutputOption = OutputFormat.TEXT) -> None:
    """Show the log store in effect and where that setting comes from."""
    from kitaru._log_store import resolve

    with command("log-store show", output) as out:
        item = resolve().to_dict()
        out.item(item, _render(item, _env_note(item["source"])))


@app.command("reset")
def reset(output: OutputOption = OutputFormat.TEXT) -> None:
    """Forget the recorded backend: back to the default (the Kitaru store)."""
    from kitaru._log_store import reset_log_store

    with command("log-store reset", output) as out:
        item = reset_log_store().to_dict()
        out.item(item, _render(item, _env_note(item["source"])))
