"""``kitaru artifacts ...``: list an execution's artifacts and show one (with its value).

Nothing here loads a value unless ``show --value`` asks for it: loading a value stored
with cloudpickle runs code, so listing and describing use the record only (serializer,
class path, size, SHA-256).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import warnings
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kitaru._blobs.serializers import NOT_STORED
from kitaru.cli._output import (
    OutputFormat,
    OutputOption,
    PageOption,
    SizeOption,
    command,
    fmt_time,
    page_of,
)
from kitaru.errors import KitaruError

if TYPE_CHECKING:
    from kitaru.client import ArtifactRef, KitaruClient

app = typer.Typer(
    help=(
        "Inspect artifacts: an execution's inputs, checkpoint outputs, values stored with "
        "kitaru.save() and its result."
    ),
    no_args_is_help=True,
)


class ArtifactKind(StrEnum):
    OUTPUT = "output"
    SAVED = "saved"
    FLOW_INPUTS = "flow_inputs"
    FLOW_RESULT = "flow_result"


class ArtifactType(StrEnum):
    """The ``type=`` of ``kitaru.save``."""

    PROMPT = "prompt"
    RESPONSE = "response"
    CONTEXT = "context"
    INPUT = "input"
    OUTPUT = "output"
    BLOB = "blob"


def _client() -> KitaruClient:
    from kitaru.client import KitaruClient

    return KitaruClient()


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def artifacts_table(refs: list[ArtifactRef]) -> Table:
    table = Table()
    table.add_column("Id", no_wrap=True)
    table.add_column("Name")
    table.add_column("Kind", no_wrap=True)
    table.add_column("Type", no_wrap=True)
    table.add_column("Call")
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Tags")
    table.add_column("Created", no_wrap=True)
    for ref in refs:
        table.add_row(
            ref.artifact_id,
            escape(ref.name),
            escape(ref.role),
            escape(ref.type or "-"),
            escape(ref.call_id or "-"),
            _size(ref.size),
            escape(", ".join(ref.tags) or "-"),
            fmt_time(ref.created_at),
        )
    return table


# --- values -----------------------------------------------------------------------------


def jsonable(value: Any) -> tuple[Any, bool]:
    """``value`` as plain JSON data, and whether that is exact (else a readable stand-in).

    Pydantic models and dataclasses become their fields, bytes their UTF-8 text
    (or base64); anything else JSON cannot hold becomes its ``repr``.
    """
    try:
        json.dumps(value, allow_nan=False)
        return value, True
    except (TypeError, ValueError):
        pass
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json"), True
        except Exception:  # not a pydantic v2 model after all
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.asdict(value)
        converted, exact = jsonable(fields)
        return converted, exact
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8"), False
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)).decode("ascii"), False
    if isinstance(value, tuple | list | set | frozenset):
        items = [jsonable(v) for v in value]
        return [v for v, _ in items], all(e for _, e in items) and isinstance(value, list)
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        pairs = {k: jsonable(v) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, all(e for _, e in pairs.values())
    return repr(value), False


def _type_name(value: Any) -> str:
    cls = type(value)
    # A class of the flow's script loaded here (see kitaru._runtime.loader) is its __main__'s.
    module = "__main__" if cls.__module__ == "__mp_main__" else cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _load(ref: ArtifactRef) -> tuple[Any, str | None]:
    """The artifact's value, and the stored class name when it is shown as its stored JSON
    (a class of a script that cannot be loaded here); a failure names the artifact."""
    from kitaru._blobs import PickleLoadNotAllowedError
    from kitaru.errors import KitaruBackendError, KitaruPlainDataWarning

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", KitaruPlainDataWarning)
            loaded = ref.load()
        plain = any(issubclass(w.category, KitaruPlainDataWarning) for w in caught)
        stored = (ref.type_path or "").replace(":", ".") if plain else None
        return loaded, stored
    except PickleLoadNotAllowedError as exc:
        raise PickleLoadNotAllowedError(
            f"Cannot show the value of artifact {ref.artifact_id} ({ref.name!r}): {exc}"
        ) from None
    except Exception as exc:  # e.g. a pickled class that is not importable here
        detail = str(exc) if isinstance(exc, KitaruError) else f"{type(exc).__name__}: {exc}"
        if ref.serializer == NOT_STORED:  # a call input that was only described
            raise KitaruBackendError(
                f"Cannot show the value of artifact {ref.artifact_id} ({ref.name!r}): {detail}"
            ) from None
        raise KitaruBackendError(
            f"Cannot load the value of artifact {ref.artifact_id} ({ref.name!r}, serializer "
            f"{ref.serializer}): {detail.rstrip('.')}. If its classes live in your code, "
            f"load it from Python where that code is importable: "
            f"KitaruClient().artifacts.get({ref.artifact_id!r}).load()."
        ) from exc


def _render_value(value: Any, console: Console, stored_type: str | None = None) -> None:
    converted, exact = jsonable(value)
    if exact:
        text = json.dumps(converted, indent=2, ensure_ascii=False)
    elif isinstance(value, bytes | bytearray):
        text = str(converted)  # its UTF-8 text, else base64
    else:
        text = repr(value)
    kind = (
        f"{stored_type}, shown as stored JSON: the script defining it cannot be loaded here"
        if stored_type
        else _type_name(value)
    )
    console.print(Text("Value", style="bold") + Text(f" ({kind})"))
    console.print(Text(text), soft_wrap=True)


def _render_ref(ref: ArtifactRef, console: Console) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows = [
        ("Artifact", ref.artifact_id),
        ("Name", ref.name),
        ("Kind", ref.role),
        ("Type", ref.type or "-"),
        ("Execution", ref.exec_id or "-"),
        ("Call", ref.call_id or "-"),
        ("Serializer", ref.serializer),
        ("Class", ref.type_path or "-"),
        ("Size", _size(ref.size)),
        ("SHA-256", ref.sha256),
        ("Tags", ", ".join(ref.tags) or "-"),
        ("Stored", ref.uri or "inline"),
        ("Created", fmt_time(ref.created_at)),
    ]
    for label, value in rows:
        grid.add_row(label, escape(value))
    console.print(grid)


# --- commands ---------------------------------------------------------------------------


@app.command("list")
def list_artifacts(
    exec_id: Annotated[
        str, typer.Argument(metavar="EXEC_ID", help="Execution id.", show_default=False)
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="Only artifacts with this name.", show_default=False),
    ] = None,
    type_: Annotated[
        ArtifactType | None,
        typer.Option(
            "--type",
            case_sensitive=False,
            help="Only saved artifacts of this kitaru.save(type=...).",
            show_default=False,
        ),
    ] = None,
    kind: Annotated[
        ArtifactKind | None,
        typer.Option(
            "--kind",
            case_sensitive=False,
            help=(
                "Only this kind: output (checkpoint outputs), saved (kitaru.save), "
                "flow_inputs or flow_result."
            ),
            show_default=False,
        ),
    ] = None,
    page: PageOption = None,
    size: SizeOption = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """List an execution's artifacts, oldest first, a page at a time.

    Checkpoint outputs (also ones reused from the cache or a replay), values
    stored with kitaru.save(), the flow's inputs and its result. Show one with
    `kitaru artifacts show ARTIFACT_ID --value`.
    """
    with command("artifacts list", output) as out:
        client = _client()
        exec_id = client.executions.resolve_id(exec_id)  # a short prefix names it too
        refs = client.artifacts.list(
            exec_id,
            name=name,
            role=None if kind is None else kind.value,
            type=None if type_ is None else type_.value,
        )
        refs = page_of(refs, page, size)

        def render(console: Console) -> None:
            if not refs:
                filtered = name is not None or type_ is not None or kind is not None
                console.print(f"No artifacts{' match' if filtered else ''} in execution {exec_id}.")
                return
            console.print(artifacts_table(refs))

        out.items([r.to_dict() for r in refs], render)


@app.command("show")
def show(
    artifact_id: Annotated[
        str, typer.Argument(metavar="ARTIFACT_ID", help="Artifact id.", show_default=False)
    ],
    value: Annotated[
        bool,
        typer.Option(
            "--value",
            help=(
                "Also load and print the value (as JSON when it is plain data, else its "
                "repr). Loading a value stored with cloudpickle (serializer 'pickle') runs "
                "code: use it only on stores you trust (KITARU_ALLOW_PICKLE=0 refuses). "
                "Values of your own classes need them importable here."
            ),
        ),
    ] = False,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Show one artifact: its name, kind, type, producing call, size, hash and tags.

    The value is loaded only with --value.
    """
    with command("artifacts show", output) as out:
        ref = _client().artifacts.get(artifact_id)
        data: dict[str, Any] = ref.to_dict()
        loaded: Any = None
        stored_type: str | None = None
        if value:
            loaded, stored_type = _load(ref)
            converted, exact = jsonable(loaded)
            data["value"] = converted
            data["value_type"] = stored_type or _type_name(loaded)
            data["value_exact"] = exact
            if stored_type:
                data["value_stored_json"] = True

        def render(console: Console) -> None:
            _render_ref(ref, console)
            if value:
                console.print()
                _render_value(loaded, console, stored_type)

        out.item(data, render)


__all__ = ["app", "jsonable"]
