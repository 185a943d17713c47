"""``kitaru init [PATH]``: mark a directory (default: the current one) as a Kitaru project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from kitaru.cli._output import OutputFormat, OutputOption, command
from kitaru.errors import KitaruUsageError

PROJECT_DIR = ".kitaru"
#: Kitaru 0.21 (on ZenML) refused a directory that already held a ZenML repository.
ZENML_DIR = ".zen"
README_NAME = "README.txt"
README_TEXT = """\
This directory marks its parent as a Kitaru project (created by `kitaru init`).

Kitaru records this project root with every execution so that a resumed, retried
or replayed execution finds the flow's code again, even when it is picked up by
another process (`kitaru worker`) or from another working directory.

Executions, checkpoint outputs and settings are not stored here: see
`kitaru status` for where they live. You may commit this directory.
"""


def init_project(directory: Path) -> tuple[Path, list[str]]:
    """Create ``.kitaru/`` and its README in ``directory``; return what was created.

    As in Kitaru 0.21, a directory that already has ``.kitaru`` (or ZenML's
    ``.zen``) is refused rather than initialized twice.
    """
    if not directory.is_dir():
        raise KitaruUsageError(
            f"Cannot initialize a Kitaru project in {directory}: "
            + ("it is not a directory." if directory.exists() else "no such directory.")
            + " Pass an existing directory (or none, for the current one)."
        )
    marker = directory / PROJECT_DIR
    if marker.exists() and not marker.is_dir():
        raise KitaruUsageError(
            f"Cannot initialize a Kitaru project in {directory}: {marker} exists and is not "
            f"a directory. Move or delete it, then run `kitaru init` again."
        )
    for existing in (marker, directory / ZENML_DIR):
        if existing.exists():
            raise KitaruUsageError(
                f"{directory} is already initialized: {existing} exists. Nothing to do; "
                f"delete {existing} first to initialize it again."
            )
    created: list[str] = []
    try:
        if not marker.is_dir():
            marker.mkdir()
            created.append(str(marker))
        readme = marker / README_NAME
        if not readme.exists():
            readme.write_text(README_TEXT, encoding="utf-8")
            created.append(str(readme))
    except OSError as exc:
        raise KitaruUsageError(
            f"Cannot initialize a Kitaru project in {directory}: {exc}. "
            f"Check the directory's permissions."
        ) from exc
    return marker, created


def init(
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="PATH",
            help="The project directory (default: the current directory).",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Mark a directory (default: the current one) as a Kitaru project (creates .kitaru/).

    Kitaru records the project root with each execution so that resumes, retries and
    replays find the flow's code from any working directory. A directory that already
    has .kitaru/ is refused.
    """
    with command("init", output) as out:
        root = (path if path is not None else Path.cwd()).absolute()
        marker, created = init_project(root)

        def render(console: Console) -> None:
            console.print(f"Initialized a Kitaru project in {escape(str(root))}")
            for created_path in created:
                console.print(f"  created {escape(created_path)}")

        out.item(
            {
                "path": str(root),
                "repository_directory": PROJECT_DIR,
                "marker": str(marker),
                "created": created,
            },
            render,
        )


def register(app: typer.Typer) -> None:
    app.command("init")(init)
