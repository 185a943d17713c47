"""``kitaru secrets ...``: named secrets, encrypted at rest; values shown only on request."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer._click.exceptions import ClickException
from typer.core import TyperCommand

from kitaru.cli._output import (
    OutputFormat,
    OutputOption,
    PageOption,
    SizeOption,
    UsageProblem,
    command,
    page_of,
)

#: How a value is shown without --show-values.
HIDDEN = "***"

app = typer.Typer(
    help=(
        "Manage secrets: named KEY=value sets (API keys), encrypted at rest in the store "
        "with the key from KITARU_SECRETS_KEY or the user config dir's secrets.key. "
        "Values are never printed unless you pass --show-values."
    ),
    no_args_is_help=True,
)

NameArg = Annotated[
    str, typer.Argument(metavar="NAME", help="Secret name (or id).", show_default=False)
]


#: ``set``'s own options: a key with one of these names must come after ``--``.
_OPTION_NAMES = ("output", "help", "private", "no-private")
_OPTION_KEYS_HINT = (
    "A key named like one of this command's options (output, help, private, no-private) "
    "goes after --, which ends the options: kitaru secrets set NAME -- --output=value."
)


def _names_an_option(token: str) -> bool:
    return token.startswith("--") and token[2:].partition("=")[0] in _OPTION_NAMES


class _SetCommand(TyperCommand):
    """``secrets set``: a command-line error caused by a key named like an option
    (``--output=zz`` is the -o option, not a key) says how to give that key."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # A copy: the parser consumes ``args`` in place.
        options = list(args[: args.index("--")] if "--" in args else args)
        try:
            return super().parse_args(ctx, args)
        except ClickException as exc:
            if any(_names_an_option(token) for token in options):
                exc.message = f"{exc.message.rstrip('.')}. {_OPTION_KEYS_HINT}"
            raise


def _parse_values(args: list[str]) -> dict[str, str]:
    """``--KEY=value`` / ``--KEY value`` pairs from the extra arguments."""
    values: dict[str, str] = {}
    index = 0
    while index < len(args):
        token = args[index]
        if not token.startswith("--") or token == "--":
            raise UsageProblem(
                f"Unexpected argument {token!r}: give values as --KEY=value "
                "(e.g. kitaru secrets set openai --OPENAI_API_KEY=sk-...)."
            )
        key, sep, value = token[2:].partition("=")
        if not sep:
            if index + 1 >= len(args):
                raise UsageProblem(f"--{key} needs a value: --{key}=value.")
            index += 1
            value = args[index]
        if not value:  # `--KEY=` (or `--KEY ""`): refused like a missing value, not stored
            raise UsageProblem(
                f"--{key} has an empty value: a secret key needs a value. Give it as "
                f"--{key}=value; nothing was saved."
            )
        if key in values:  # a silent "last one wins" would hide a typo
            raise UsageProblem(f"--{key} is given twice: give each key once; nothing was saved.")
        values[key] = value
        index += 1
    if not values:
        raise UsageProblem(
            f"Give at least one value: kitaru secrets set NAME --KEY=value. {_OPTION_KEYS_HINT}"
        )
    return values


@app.command(
    "set",
    cls=_SetCommand,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def set_(
    ctx: typer.Context,
    name: NameArg,
    private: Annotated[
        bool | None,
        typer.Option("--private/--no-private", help="Mark the secret private.", show_default=False),
    ] = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Create a secret or update it: kitaru secrets set NAME --KEY=value [--KEY2=value2].

    Keys given replace those keys' values; other keys of an existing secret stay.
    Each key may be given once. A key named like one of this command's options
    (output, help, private, no-private) goes after --, which ends the options:
    kitaru secrets set NAME [--private] [-o json] -- --output=value.
    """
    with command("secrets set", output) as out:
        from kitaru.secrets import set_secret

        if name.startswith("-"):  # unknown options pass through to ctx.args, NAME too
            raise UsageProblem(
                f"No such option: {name}. Give the secret NAME first, then --KEY=value pairs."
            )

        summary = set_secret(name, _parse_values(list(ctx.args)), private=private)
        data = summary.to_dict()
        out.item(
            data,
            lambda console: console.print(
                f"Saved secret [bold]{escape(summary.name)}[/bold] "
                f"(keys: {escape(', '.join(summary.keys))})."
            ),
        )


@app.command("show")
def show(
    name: NameArg,
    show_values: Annotated[
        bool, typer.Option("--show-values", help="Print the values in the clear.")
    ] = False,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Show a secret's keys (values as *** unless --show-values)."""
    with command("secrets show", output) as out:
        from kitaru.secrets import get_secret

        secret = get_secret(name)
        values = {k: (secret.values[k] if show_values else HIDDEN) for k in secret.keys}
        data: dict[str, Any] = {
            "name": secret.name,
            "id": secret.id,
            "private": secret.private,
            "keys": secret.keys,
            "values": values,
        }

        def render(console: Console) -> None:
            console.print(f"Secret [bold]{escape(secret.name)}[/bold] ({secret.id})")
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold")
            grid.add_column()
            for key, value in values.items():
                grid.add_row(escape(key), escape(value))
            console.print(grid)

        out.item(data, render)


@app.command("list")
def list_(
    page: PageOption = None, size: SizeOption = None, output: OutputOption = OutputFormat.TEXT
) -> None:
    """List secrets: names and key names, never values."""
    with command("secrets list", output) as out:
        from kitaru.secrets import list_secrets

        items = [s.to_dict() for s in page_of(list_secrets(), page, size)]

        def render(console: Console) -> None:
            if not items:
                console.print("No secrets. Add one: kitaru secrets set NAME --KEY=value")
                return
            table = Table()
            table.add_column("Name", style="bold")
            table.add_column("Keys")
            table.add_column("Id", no_wrap=True)
            for item in items:
                table.add_row(escape(item["name"]), escape(", ".join(item["keys"])), item["id"])
            console.print(table)

        out.items(items, render)


@app.command("delete")
def delete(name: NameArg, output: OutputOption = OutputFormat.TEXT) -> None:
    """Delete a secret."""
    with command("secrets delete", output) as out:
        from kitaru.secrets import delete_secret

        summary = delete_secret(name)
        out.item(
            summary.to_dict(),
            lambda console: console.print(f"Deleted secret [bold]{escape(summary.name)}[/bold]."),
        )
