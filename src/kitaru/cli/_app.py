"""The root Typer application; command groups attach themselves here."""

from __future__ import annotations

import typer

from kitaru._version import __version__

app = typer.Typer(
    name="kitaru",
    help="Kitaru: durable execution for Python AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"kitaru {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        help="Print the Kitaru version and exit.",
    ),
) -> None:
    """Kitaru: durable execution for Python AI agents."""


def main() -> None:
    app()
