"""``/api/v1``: artifacts (list, metadata, bytes, preview), stacks, health and version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from kitaru._backend import get_backend
from kitaru._store import _wire
from kitaru._version import __version__
from kitaru.client import KitaruClient
from kitaru.client._ids import resolve_id
from kitaru.errors import KitaruUsageError, artifact_not_found
from kitaru.server._auth import Reader
from kitaru.server._preview import artifact_bytes, preview
from kitaru.server._schemas import (
    Artifact,
    ArtifactList,
    ArtifactPreview,
    ErrorResponse,
    Health,
    StackList,
    Version,
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 422, 503)
}
router = APIRouter(responses=_ERRORS)


@router.get(
    "/executions/{exec_id}/artifacts",
    response_model=ArtifactList,
    tags=["artifacts"],
    summary="An execution's artifacts, oldest first",
)
def list_artifacts(
    request: Request,
    exec_id: str,
    _key: Reader,
    name: str | None = None,
    kind: str | None = None,
    producing_call: str | None = None,
    role: str | None = None,
    type_: Annotated[str | None, Query(alias="type", description="The save type")] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[
        int, Query(ge=0, description="Skip this many (the next_offset of the last page)")
    ] = 0,
) -> dict[str, Any]:
    cap: int = request.app.state.settings.max_page_size
    if limit is not None and limit > cap:
        raise KitaruUsageError(
            f"limit={limit} is more than this server returns at once ({cap}, "
            "KITARU_SERVER_MAX_PAGE_SIZE); page through with offset= (next_offset) instead."
        )
    size = limit or cap
    # The whole list, then a page of it: its order (oldest first) is the local client's,
    # which sorts what it gathers from calls and saved artifacts, not a query's.
    refs = KitaruClient().artifacts.list(
        exec_id, name=name, kind=kind, producing_call=producing_call, role=role, type=type_
    )
    page = refs[offset : offset + size]
    items = [r.to_dict() for r in page]
    more = offset + size < len(refs)
    return {"items": items, "count": len(items), "next_offset": offset + size if more else None}


def _record(artifact_id: str) -> Any:
    store = get_backend().store
    record = store.get_artifact(resolve_id(store, "artifacts", artifact_id))
    if record is None:
        raise artifact_not_found(
            artifact_id,
            "no artifact with this id. List an execution's artifacts with GET "
            "/api/v1/executions/{exec_id}/artifacts.",
        )
    return record


@router.get(
    "/artifacts/{artifact_id}", response_model=Artifact, tags=["artifacts"], summary="Metadata"
)
def get_artifact(artifact_id: str, _key: Reader) -> dict[str, Any]:
    return KitaruClient().artifacts.get(artifact_id).to_dict()


@router.get(
    "/artifacts/{artifact_id}/data",
    tags=["artifacts"],
    summary="The stored bytes (as written by the serializer)",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download(artifact_id: str, _key: Reader) -> Response:
    record = _record(artifact_id)
    data = artifact_bytes(get_backend(), record)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{record.id}.bin"',
            "X-Kitaru-Serializer": record.serializer,
            "X-Kitaru-Sha256": record.sha256,
        },
    )


@router.get(
    "/artifacts/{artifact_id}/preview",
    response_model=ArtifactPreview,
    tags=["artifacts"],
    summary="The value as JSON, where its serializer stores JSON (never unpickles)",
)
def get_preview(artifact_id: str, _key: Reader) -> dict[str, Any]:
    record = _record(artifact_id)
    ok, value, reason = preview(get_backend(), record)
    return {
        "artifact_id": record.id,
        "serializer": record.serializer,
        "previewable": ok,
        "value": value,
        "reason": reason,
    }


@router.get("/stacks", response_model=StackList, tags=["stacks"], summary="Stacks")
def stacks(_key: Reader) -> dict[str, Any]:
    from kitaru._stacks.registry import list_stacks

    found = list_stacks()
    items = [
        {"id": s.id, "name": s.name, "kind": getattr(s, "kind", "local"), "is_active": s.is_active}
        for s in found
    ]
    return {"items": items, "count": len(items)}


@router.get("/health", response_model=Health, tags=["server"], summary="Liveness (no key needed)")
def health() -> dict[str, Any]:
    return {"status": "ok"}


@router.get("/version", response_model=Version, tags=["server"], summary="Server version")
def version(request: Request, _key: Reader) -> dict[str, Any]:
    # The page cap too: clients page within it (a server started with a small one).
    settings = request.app.state.settings
    return {
        "version": __version__,
        "api": "v1",
        "max_page_size": settings.max_page_size,
        "protocol": _wire.PROTOCOL,
        "max_body_bytes": settings.max_body_bytes,
        "max_input_body_bytes": settings.input_body_bytes,
    }
