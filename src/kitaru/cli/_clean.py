"""``kitaru clean project|global|all``: delete Kitaru's local state.

* ``project``: the project's ``.kitaru/`` directory (found from the cwd upwards);
* ``global``: Kitaru's entries in the config directory: the global config file and
  its lock, the embedded SQLite store and the default artifact directory;
* ``all``: both.

Destructive, so it asks first; without a terminal it needs ``--yes``. Only
Kitaru's own entries are deleted: other files in the config directory (which a
user may have pointed at a shared place with ``KITARU_CONFIG_PATH``) are kept, and
a store or artifact location configured elsewhere is never touched. Without
``--force`` it refuses to delete an embedded store that still has running or
waiting executions.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from kitaru.cli._output import Output, OutputFormat, OutputOption, command
from kitaru.errors import KitaruStateError, KitaruUsageError

app = typer.Typer(
    help=(
        "Delete Kitaru's local state: the project's .kitaru directory (project), the "
        "config directory's store, artifacts and settings (global), or both (all)."
    ),
    no_args_is_help=True,
)

#: The config directory's entries Kitaru owns (globs); nothing else there is deleted.
_GLOBAL_ENTRIES = ("config.json", "config.json.*", "config.lock", "kitaru.db", "kitaru.db*")
_ARTIFACTS_DIR = "artifacts"

YesOption = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Do not ask for confirmation (needed in scripts)."),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Only list what would be deleted; delete nothing.")
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help=(
            "Delete the embedded store even when it has running or waiting executions "
            "(or cannot be read to check)."
        ),
    ),
]


def _project_paths(required: bool) -> list[Path]:
    from kitaru._runtime.loader import PROJECT_MARKER, find_project_root

    root = find_project_root(Path.cwd().absolute())
    if root is None:
        if required:
            raise KitaruUsageError(
                f"No Kitaru project here: no {PROJECT_MARKER} directory in {Path.cwd()} or its "
                "parents. Run `kitaru clean project` inside the project (or `kitaru init` to "
                "create one)."
            )
        return []
    return [root / PROJECT_MARKER]


def _global_paths() -> list[Path]:
    from kitaru._paths import config_dir

    directory = config_dir()
    found: dict[Path, None] = {}
    for pattern in _GLOBAL_ENTRIES:
        for path in sorted(directory.glob(pattern)):
            found[path] = None
    artifacts = directory / _ARTIFACTS_DIR
    if artifacts.exists():
        found[artifacts] = None
    return list(found)


def _live_executions(paths: list[Path]) -> int:
    """Running or waiting executions in the embedded store about to be deleted."""
    from kitaru._paths import config_dir
    from kitaru._store import ExecutionStatus
    from kitaru.client import KitaruClient
    from kitaru.config import resolve_store_location

    database = config_dir() / "kitaru.db"
    _url, source = resolve_store_location()
    if database not in paths or source is not None:
        return 0  # the store in use lives elsewhere; this one is not being run from here
    live = KitaruClient().executions.list(
        status=[ExecutionStatus.RUNNING, ExecutionStatus.WAITING], limit=1000
    )
    return len(live)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _paths(scope: str) -> list[Path]:
    paths: list[Path] = []
    if scope in ("project", "all"):
        paths += _project_paths(required=scope == "project")
    if scope in ("global", "all"):
        paths += _global_paths()
    return paths


def _clean(out: Output, scope: str, *, yes: bool, dry_run: bool, force: bool) -> None:
    from kitaru._backend import forget_backends

    paths = _paths(scope)
    aborted = False
    deleted: list[str] = []
    if paths and not dry_run:
        if not yes and not _stdin_is_tty():
            raise KitaruUsageError(
                f"Not deleting {len(paths)} path(s) without confirmation: stdin is not a "
                "terminal. Pass --yes to delete them (or --dry-run to list them)."
            )
        if not force:
            try:
                live = _live_executions(paths)
            except Exception as exc:  # a damaged store: exactly what --force is for
                raise KitaruStateError(
                    f"Cannot check the embedded store for running executions ({exc}). Pass "
                    "--force to delete it anyway."
                ) from exc
            if live:
                raise KitaruStateError(
                    f"The embedded store has {live} running or waiting execution(s); deleting "
                    "it would lose them. Let them finish or cancel them, or pass --force."
                )
        if not yes:
            listing = "\n".join(f"  {p}" for p in paths)
            aborted = not typer.confirm(
                f"Delete these paths?\n{listing}\n", default=False, err=True
            )
        if not aborted:
            # Close the store this process opened to check it, then list again: the
            # check may have created the database's -wal/-shm files.
            forget_backends()
            paths = _paths(scope)
            for path in paths:
                _delete(path)
                deleted.append(str(path))
    data: dict[str, Any] = {
        "scope": scope,
        "dry_run": dry_run,
        "aborted": aborted,
        "deleted_paths": deleted,
        "planned_paths": [str(p) for p in paths],
    }

    def render(console: Console) -> None:
        if not paths:
            console.print("Nothing to delete.")
        elif dry_run:
            console.print("Would delete (dry run):")
            for path in paths:
                console.print(f"  {escape(str(path))}")
        elif aborted:
            console.print("Aborted; nothing was deleted.")
        else:
            console.print("Deleted:")
            for deleted_path in deleted:
                console.print(f"  {escape(deleted_path)}")

    out.item(data, render)


@app.command("project")
def clean_project(
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    force: ForceOption = False,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Delete the current project's .kitaru directory."""
    with command("clean project", output) as out:
        _clean(out, "project", yes=yes, dry_run=dry_run, force=force)


@app.command("global")
def clean_global(
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    force: ForceOption = False,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Delete the config directory's store, artifacts and settings (every execution!)."""
    with command("clean global", output) as out:
        _clean(out, "global", yes=yes, dry_run=dry_run, force=force)


@app.command("all")
def clean_all(
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    force: ForceOption = False,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Delete both the project's .kitaru directory and the global state."""
    with command("clean all", output) as out:
        _clean(out, "all", yes=yes, dry_run=dry_run, force=force)


__all__ = ["app"]
