"""``kitaru auth service-accounts|api-keys``: who may call the Kitaru server.

These commands change the store this machine is configured for
(``KITARU_STORE_URL`` or the embedded default), which is the store the server
serves: run them where the server's store is reachable.
"""

from __future__ import annotations

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
    command,
    fmt_time,
    page_of,
)
from kitaru.errors import KitaruUsageError

app = typer.Typer(help="Service accounts and API keys of the Kitaru server.", no_args_is_help=True)
accounts_app = typer.Typer(help="Service accounts (owners of API keys).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (raw keys are shown once).", no_args_is_help=True)
app.add_typer(accounts_app, name="service-accounts")
app.add_typer(keys_app, name="api-keys")

Account = Annotated[str, typer.Argument(help="The service account's name.")]
KeyName = Annotated[str, typer.Argument(help="The key's name (unique per account).")]


def _store() -> Any:
    from kitaru._backend import get_backend

    return get_backend().store


def _when(value: float | None) -> str:
    from datetime import UTC, datetime

    return fmt_time(None if value is None else datetime.fromtimestamp(value, tz=UTC))


@accounts_app.command("create")
def create_account(
    name: Account,
    description: Annotated[
        str | None,
        typer.Option(
            "--description",
            "-d",
            help="What the account is for (shown in listings).",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Create a service account."""
    with command("auth service-accounts create", output) as out:
        from kitaru.server._accounts import create_account as create

        account = create(_store(), name, description)
        out.item(
            account.to_dict(),
            lambda c: c.print(f"Created service account {escape(account.name)}."),
        )


@accounts_app.command("list")
def list_accounts(
    page: PageOption = None, size: SizeOption = None, output: OutputOption = OutputFormat.TEXT
) -> None:
    """List service accounts."""
    with command("auth service-accounts list", output) as out:
        from kitaru.server._accounts import list_accounts as list_all

        accounts = page_of(list_all(_store()), page, size)

        def render(console: Console) -> None:
            if not accounts:
                console.print("No service accounts.")
                return
            table = Table("NAME", "ID", "CREATED", "DESCRIPTION")
            for a in accounts:
                table.add_row(
                    escape(a.name), a.id[:8], _when(a.created_at), escape(a.description or "")
                )
            console.print(table)

        out.items([a.to_dict() for a in accounts], render)


@accounts_app.command("delete")
def delete_account(name: Account, output: OutputOption = OutputFormat.TEXT) -> None:
    """Delete a service account and all its API keys (they stop working at once)."""
    with command("auth service-accounts delete", output) as out:
        from kitaru.server._accounts import delete_account as delete

        delete(_store(), name)
        out.item(
            {"name": name, "deleted": True},
            lambda c: c.print(f"Deleted service account {escape(name)} and its API keys."),
        )


def _show_raw(console: Console, what: str, key: Any, raw: str) -> None:
    console.print(f"{what} API key {escape(key.name)} of {escape(key.account)} ({key.access}).")
    console.print("The key is shown only now; store it safely:")
    console.print(raw, markup=False, highlight=False, soft_wrap=True)


@keys_app.command("create")
def create_key(
    account: Account,
    name: KeyName,
    read_only: Annotated[
        bool,
        typer.Option("--read-only/--read-write", help="Read-only keys get 403 on control routes."),
    ] = False,
    runner: Annotated[
        bool,
        typer.Option(
            "--runner", help="Also record executions (for runners and workers on other machines)."
        ),
    ] = False,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Create an API key for a service account; prints the raw key once."""
    with command("auth api-keys create", output) as out:
        from kitaru.server._accounts import create_key as create

        if read_only and runner:
            raise KitaruUsageError("A key is either --read-only or --runner, not both.")
        access = "runner" if runner else "read" if read_only else "write"
        key, raw = create(_store(), account, name, access)
        out.item({**key.to_dict(), "key": raw}, lambda c: _show_raw(c, "Created", key, raw))


@keys_app.command("list")
def list_keys(
    account: Annotated[str | None, typer.Argument(help="Only this account's keys.")] = None,
    page: PageOption = None,
    size: SizeOption = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """List API keys (never the keys themselves)."""
    with command("auth api-keys list", output) as out:
        from kitaru.server._accounts import list_keys as list_all

        keys = page_of(list_all(_store(), account), page, size)

        def render(console: Console) -> None:
            if not keys:
                console.print("No API keys.")
                return
            table = Table("ACCOUNT", "NAME", "ACCESS", "CREATED", "ROTATED")
            for k in keys:
                table.add_row(
                    escape(k.account),
                    escape(k.name),
                    k.access,
                    _when(k.created_at),
                    _when(k.rotated_at),
                )
            console.print(table)

        out.items([k.to_dict() for k in keys], render)


@keys_app.command("rotate")
def rotate_key(account: Account, name: KeyName, output: OutputOption = OutputFormat.TEXT) -> None:
    """Give a key a new secret; the old one stops working at once. Prints the new key once."""
    with command("auth api-keys rotate", output) as out:
        from kitaru.server._accounts import rotate_key as rotate

        key, raw = rotate(_store(), account, name)
        out.item({**key.to_dict(), "key": raw}, lambda c: _show_raw(c, "Rotated", key, raw))


@keys_app.command("delete")
def delete_key(account: Account, name: KeyName, output: OutputOption = OutputFormat.TEXT) -> None:
    """Delete an API key; it stops working at once."""
    with command("auth api-keys delete", output) as out:
        from kitaru.server._accounts import delete_key as delete

        delete(_store(), account, name)
        out.item(
            {"service_account": account, "name": name, "deleted": True},
            lambda c: c.print(f"Deleted API key {escape(name)} of {escape(account)}."),
        )
