"""``kitaru analytics ...``: Kitaru 0.21's usage-analytics switch.

Kitaru sends no usage data anywhere, so there is nothing to switch on or off; the
commands exist because scripts written for 0.21 run them (``kitaru analytics
opt-out`` in CI set-ups). The preference is recorded in the user config and shown.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from kitaru.cli._output import OutputFormat, OutputOption, command

app = typer.Typer(
    help=(
        "Usage analytics: Kitaru sends no usage data anywhere. The preference set here "
        "is recorded for scripts written for Kitaru 0.21, and changes nothing else."
    ),
    no_args_is_help=True,
)

#: The user config's key (config.json) for the recorded preference.
_KEY = "analytics_opt_in"


def _item(recorded: object) -> dict[str, Any]:
    return {
        "opted_in": recorded is True,
        "source": "default" if recorded is None else "global user config",
        "sends_data": False,
    }


def _render(item: dict[str, Any]) -> Any:
    def render(console: Console) -> None:
        choice = "opted in" if item["opted_in"] else "opted out"
        console.print(f"Analytics: {choice} ({item['source']}). Kitaru sends no usage data.")

    return render


def _record(opt_in: bool | None, name: str, output: OutputFormat) -> None:
    from kitaru._paths import read_global_config, update_global_config

    with command(f"analytics {name}", output) as out:
        if opt_in is None:
            recorded = read_global_config().get(_KEY)
        else:
            with update_global_config() as data:
                data[_KEY] = recorded = opt_in
        item = _item(recorded if isinstance(recorded, bool) else None)
        out.item(item, _render(item))


@app.command("status")
def status(output: OutputOption = OutputFormat.TEXT) -> None:
    """Show the recorded preference (Kitaru sends no usage data either way)."""
    _record(None, "status", output)


@app.command("opt-in")
def opt_in(output: OutputOption = OutputFormat.TEXT) -> None:
    """Record an opt-in (Kitaru still sends no usage data)."""
    _record(True, "opt-in", output)


@app.command("opt-out")
def opt_out(output: OutputOption = OutputFormat.TEXT) -> None:
    """Record an opt-out."""
    _record(False, "opt-out", output)
