"""``kitaru model ...``: aliases for kitaru.llm() models (stored in the user config)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kitaru.cli._output import (
    OutputFormat,
    OutputOption,
    PageOption,
    SizeOption,
    command,
    page_of,
)

app = typer.Typer(
    help=(
        "Manage model aliases for kitaru.llm(): a short name for 'provider/model' and the "
        "secret holding its API key. kitaru.llm() without model= uses KITARU_DEFAULT_MODEL, "
        "else the default alias. Each execution freezes the aliases it started with."
    ),
    no_args_is_help=True,
)

AliasArg = Annotated[
    str, typer.Argument(metavar="ALIAS", help="The alias (e.g. fast).", show_default=False)
]


@app.command("register")
def register(
    alias: AliasArg,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="provider/model: openai/…, anthropic/…, ollama/… or openrouter/….",
            show_default=False,
        ),
    ],
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            help="Name of a kitaru secret holding the API key (used when the provider's "
            "env var, e.g. OPENAI_API_KEY, is not set).",
            show_default=False,
        ),
    ] = None,
    default: Annotated[bool, typer.Option("--default", help="Make it the default model.")] = False,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Register (or replace) a model alias. The first alias becomes the default."""
    with command("model register", output) as out:
        from kitaru._llm._registry import register_model

        entry = register_model(alias, model, secret=secret, default=default)
        data = entry.to_dict()
        out.item(
            data,
            lambda console: console.print(
                f"Registered [bold]{escape(entry.alias)}[/bold] → {escape(entry.model)}"
                + (" (default)" if entry.is_default else "")
            ),
        )


@app.command("list")
def list_models(
    page: PageOption = None, size: SizeOption = None, output: OutputOption = OutputFormat.TEXT
) -> None:
    """List model aliases; the default is marked with *."""
    with command("model list", output) as out:
        from kitaru._llm._registry import list_models as _list

        items = [m.to_dict() for m in page_of(_list(), page, size)]

        def render(console: Console) -> None:
            if not items:
                console.print(
                    "No model aliases. Add one: kitaru model register fast --model "
                    "openai/gpt-4o-mini"
                )
                return
            table = Table()
            table.add_column("", width=1)
            table.add_column("Alias", style="bold")
            table.add_column("Model")
            table.add_column("Secret")
            for item in items:
                table.add_row(
                    "*" if item["is_default"] else "",
                    escape(item["alias"]),
                    escape(item["model"]),
                    escape(item["secret"] or "-"),
                )
            console.print(table)

        out.items(items, render)


@app.command("remove")
def remove(alias: AliasArg, output: OutputOption = OutputFormat.TEXT) -> None:
    """Remove a model alias (running executions keep the aliases they froze)."""
    with command("model remove", output) as out:
        from kitaru._llm._registry import remove_model

        entry = remove_model(alias)
        data = entry.to_dict()
        out.item(
            data,
            lambda console: console.print(f"Removed model alias [bold]{escape(alias)}[/bold]."),
        )
