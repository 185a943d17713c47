"""``kitaru init``: mark the current directory as a Kitaru project."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from kitaru.cli._output import OutputFormat, OutputOption, command
from kitaru.errors import KitaruUsageError

PROJECT_DIR = ".kitaru"
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
    """Create ``.kitaru/`` and its README in ``directory``; return what was created."""
    marker = directory / PROJECT_DIR
    if marker.exists() and not marker.is_dir():
        raise KitaruUsageError(
            f"Cannot initialize a Kitaru project in {directory}: {marker} exists and is not "
            f"a directory. Move or delete it, then run `kitaru init` again."
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


def init(output: OutputOption = OutputFormat.TEXT) -> None:
    """Mark the current directory as a Kitaru project (creates .kitaru/).

    Kitaru records the project root with each execution so that resumes, retries and
    replays find the flow's code from any working directory. Safe to run again.
    """
    with command("init", output) as out:
        root = Path.cwd().absolute()
        marker, created = init_project(root)

        def render(console: Console) -> None:
            if created:
                console.print(f"Initialized a Kitaru project in {escape(str(root))}")
                for path in created:
                    console.print(f"  created {escape(path)}")
            else:
                console.print(
                    f"Already a Kitaru project: {escape(str(marker))} exists; nothing to do."
                )

        out.item(
            {
                "project_root": str(root),
                "marker": str(marker),
                "created": created,
                "already_initialized": not created,
            },
            render,
        )


def register(app: typer.Typer) -> None:
    app.command("init")(init)
