"""``POST /api/v1/store/{method}``: the store contract over HTTP, for runners and workers.

A process whose store URL is ``kitaru+http://HOST:PORT`` records its executions
through the server: each store call is one request (one per checkpoint on the
hot path). Arguments and results use the tagged JSON of ``kitaru._store._wire``;
nothing is unpickled (a wait's pickled schema is stored as bytes, untouched).
Needs a runner key (``kitaru auth api-keys create ACCOUNT NAME --runner``).

``PUT/GET /api/v1/store/blobs``: artifact bytes of a runner without a shared
artifact root, written to and read from the server's own root (body cap
``KITARU_SERVER_MAX_BLOB_BYTES``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import sqlite3
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc

from kitaru._backend import get_backend
from kitaru._store import StaleOwnerError, _wire
from kitaru.errors import KitaruError
from kitaru.server._auth import Runner
from kitaru.server._errors import MAX_STORED_INT, OUT_OF_RANGE, ApiError, out_of_range
from kitaru.server._schemas import ErrorResponse

router = APIRouter(
    prefix="/store",
    tags=["store"],
    responses={code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 503)},
)


class BlobRef(BaseModel):
    uri: str = Field(description="Where the server stored the bytes (under its artifact root)")
    sha256: str


@router.put(
    "/blobs",
    response_model=BlobRef,
    summary="Store artifact bytes in the server's artifact root",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def put_blob(request: Request, _key: Runner) -> dict[str, str]:
    data = await request.body()
    claimed = request.headers.get("x-kitaru-sha256")
    sha = hashlib.sha256(data).hexdigest()
    if claimed is not None and claimed.lower() != sha:
        raise ApiError(
            400,
            "KitaruBackendError",
            "The uploaded bytes do not match their X-Kitaru-Sha256 header (damaged in "
            "transit?); nothing was stored. Upload them again.",
        )
    uri, stored = await run_in_threadpool(get_backend().blobs.put, data)
    return {"uri": uri, "sha256": stored}


@router.get(
    "/blobs",
    summary="Read artifact bytes from the server's artifact root",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def get_blob(
    _key: Runner,
    uri: str = Query(min_length=1, max_length=4096),
    sha256: str = Query(pattern="^[0-9a-f]{64}$"),
) -> Response:
    data = get_backend().blobs.get(uri, sha256)
    return Response(content=data, media_type="application/octet-stream")


class StoreCall(BaseModel):
    positional: list[Any] = Field(default_factory=list, description="Tagged JSON arguments")
    keywords: dict[str, Any] = Field(default_factory=dict, description="Tagged JSON keywords")


class StoreResult(BaseModel):
    result: Any = None


def same_protocol(request: Request) -> None:
    """Refuse a store call stating another store protocol (a runner of another Kitaru
    version), before its body is read; a call that states none is served."""
    stated = (request.headers.get(_wire.PROTOCOL_HEADER) or "").strip()
    if stated and stated != str(_wire.PROTOCOL):
        raise ApiError(409, "KitaruBackendError", _wire.request_states_other(stated))


SameProtocol = Annotated[None, Depends(same_protocol)]


@router.post("/{method}", response_model=StoreResult, summary="Call a store contract method")
def call(method: str, _key: Runner, _protocol: SameProtocol, body: StoreCall) -> dict[str, Any]:
    if method not in _wire.METHODS:
        raise ApiError(
            404, "KitaruUsageError", f"{method!r} is not a store method callable over HTTP."
        )
    try:
        args = _wire.decode(body.positional)
        kwargs = _wire.decode(body.keywords)
    except RecursionError:
        raise ApiError(
            400, "KitaruUsageError", f"The arguments of store.{method} are nested too deeply."
        ) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ApiError(
            400, "KitaruUsageError", f"Malformed arguments for store.{method}: {exc!r}"
        ) from None
    store = get_backend().store
    _check_numbers(store, method, args, kwargs)
    try:
        result = getattr(store, method)(*args, **kwargs)
    except StaleOwnerError as exc:
        raise ApiError(409, "StaleOwnerError", str(exc)) from None
    except RecursionError:  # a value nested deeper than the store can serialize
        raise ApiError(
            400, "KitaruUsageError", f"A value given to store.{method} is nested too deeply."
        ) from None
    except sa_exc.IntegrityError as exc:  # e.g. an execution id that exists already
        raise ApiError(
            409,
            "KitaruBackendError",
            f"The store refused store.{method}: {type(exc.orig).__name__}: {exc.orig}",
        ) from None
    except KitaruError:
        raise  # typed already (the app's handlers answer it)
    except OverflowError:  # a number _check_numbers could not see (SQLite cannot bind it)
        raise ApiError(400, "KitaruUsageError", f"store.{method}: {OUT_OF_RANGE}") from None
    except (TypeError, ValueError, sqlite3.InterfaceError, sqlite3.ProgrammingError) as exc:
        # Arguments of the wrong type for the method (a dict for an id, text for a
        # limit): the caller's mistake, refused before anything is written.
        raise ApiError(
            400, "KitaruUsageError", f"Bad arguments for store.{method}: {exc}"
        ) from None
    except sa_exc.StatementError as exc:  # the same, found while binding the statement
        binding = (sa_exc.ProgrammingError, sa_exc.InterfaceError, sa_exc.DataError)
        if isinstance(exc, sa_exc.DBAPIError) and not isinstance(exc, binding):
            raise  # the database failed (unreachable, locked): not the caller's mistake
        if out_of_range(exc):  # e.g. 2**31 for a 32-bit column of PostgreSQL
            raise ApiError(
                400, "KitaruUsageError", f"store.{method}: {OUT_OF_RANGE} ({exc.orig})"
            ) from None
        raise ApiError(
            400, "KitaruUsageError", f"Bad arguments for store.{method}: {exc.orig}"
        ) from None
    return {"result": _wire.encode(result)}


def _check_numbers(store: Any, method: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Refuse an integer argument the store cannot keep (past 64 bits), naming it.

    Looks at the arguments, their items and the fields of records: the values a store
    method binds to integer columns. Numbers inside JSON data (metadata, inputs) are
    stored as JSON, which holds any size, and are left alone. Every runner's store call
    passes here: the arguments are named (a signature bound) only once one is refused.
    """
    if all(_too_large(value) is None for value in (*args, *kwargs.values())):
        return
    for name, value in _argument_names(store, method, args, kwargs):
        found = _too_large(value)
        if found is not None:
            where, number = found
            raise ApiError(
                400,
                "KitaruUsageError",
                f"Argument {name!r}{where} of store.{method} is {number}, outside the range "
                f"the store keeps: whole numbers from {-MAX_STORED_INT - 1} to "
                f"{MAX_STORED_INT}. Nothing was stored.",
            )


def _argument_names(
    store: Any, method: str, args: list[Any], kwargs: dict[str, Any]
) -> list[tuple[str, Any]]:
    """(parameter name, value) of each argument (positions where no name is known)."""
    positions = [(f"#{i}", v) for i, v in enumerate(args)]
    try:
        signature = inspect.signature(getattr(type(store), method))
        bound = signature.bind(store, *args, **kwargs)
    except (TypeError, ValueError, AttributeError):  # the call itself fails: it says why
        return [*positions, *kwargs.items()]
    named: list[tuple[str, Any]] = []
    for name, value in list(bound.arguments.items())[1:]:
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            named.extend(value.items())  # **filters: each by its own name
        elif signature.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL:
            named.extend((f"{name}[{i}]", v) for i, v in enumerate(value))
        else:
            named.append((name, value))
    return named


def _too_large(value: Any) -> tuple[str, int] | None:
    """(where in ``value``, the number) of an integer past 64 bits, if any."""
    for where, item in _slots(value):
        integer = isinstance(item, int) and not isinstance(item, bool)
        if integer and not -MAX_STORED_INT - 1 <= item <= MAX_STORED_INT:
            return where, item
    return None


def _slots(value: Any) -> Iterator[tuple[str, Any]]:
    """``value``, its items and the fields of its records (where it says, in words)."""
    yield "", value
    if isinstance(value, list | tuple | set):
        for index, item in enumerate(value):
            yield f" (item {index})", item
            for field, inner in _fields(item):
                yield f" (item {index}, field {field})", inner
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f" (key {key!r})", item
    else:
        for field, inner in _fields(value):
            yield f" (field {field})", inner


def _fields(value: Any) -> Iterator[tuple[str, Any]]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield field.name, getattr(value, field.name)
