"""Wait answers coerced as the flow's own type would coerce them (Pydantic's lax mode).

Shared by the server (which checks answers) and the remote client (which checks them
before sending, as a local store does).

Where the flow runs, ``kitaru.wait(schema=T)`` validates an answer with Pydantic in
lax mode: ``"3"`` is an ``int``, ``"yes"`` a ``bool``, ``2.0`` an ``int``. The server
never has ``T`` (it never unpickles), only the wait's JSON schema, which a strict
JSON Schema validator would hold to the letter: the same answer would be accepted
by one and refused by the other. So the server builds, from the JSON schema, a plain
type of the same shape (``int``, ``list[...]``, a ``TypedDict``, a ``Literal``, a
union...), lets Pydantic coerce the answer with it, and only then checks it against
the JSON schema (for the constraints a type does not carry: bounds, patterns...).
Anything it cannot map stays ``Any``: checked by the JSON schema alone, as before.
"""

from __future__ import annotations

import copy
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, NotRequired, Required, Union, cast
from uuid import UUID

from typing_extensions import TypedDict  # Pydantic needs it before Python 3.12

#: Deeper than this (or a ``$ref`` cycle) is left to the JSON schema alone.
_MAX_DEPTH = 24

_SCALARS: dict[str, Any] = {
    "integer": int,
    "number": float,
    "boolean": bool,
    "string": str,
    "null": type(None),
}
#: Strings whose ``format`` names the type Pydantic wrote it for (``datetime`` is
#: ``{"type": "string", "format": "date-time"}``): coerced as that type, so that an
#: answer the flow's type would refuse ("yesterday" for a datetime) is refused here.
_FORMATS: dict[str, Any] = {
    "date-time": datetime,
    "date": date,
    "time": time,
    "duration": timedelta,
    "uuid": UUID,
}


def coerced(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` as Pydantic would coerce it for the type ``schema`` describes, in JSON
    form; ``value`` unchanged when it does not coerce (the JSON schema then says why)."""
    return coerce(value, schema)[0]


def coerce(value: Any, schema: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """``coerced``, and the problems Pydantic found when it refused ``value`` (each with
    ``loc``, ``msg`` and ``type``); none when it coerced, or when no type mirrors the
    schema (the JSON schema alone decides then)."""
    from pydantic import TypeAdapter, ValidationError

    try:
        shape = _shape(schema, schema.get("$defs") or {}, 0)
        adapter: TypeAdapter[Any] = TypeAdapter(shape)
    except Exception:  # a schema no type mirrors: the JSON schema decides
        return value, []
    try:
        return adapter.dump_python(adapter.validate_python(value), mode="json"), []
    except ValidationError as exc:
        return value, [dict(e) for e in exc.errors(include_url=False)]
    except Exception:  # e.g. a value nested deeper than Pydantic goes: the schema decides
        return value, []


#: Pydantic error types of the date, time, duration and UUID types ``_FORMATS`` maps
#: to: the JSON schema, which checks no format, would let such an answer through.
_FORMAT_ERRORS = ("date", "time", "uuid")


def format_problems(problems: list[dict[str, Any]], value: Any) -> list[tuple[list[Any], str]]:
    """The problems of ``coerce`` about a date, time, duration or UUID in text form, as
    (path into ``value``, message): Pydantic's location also names union branches and
    types, which are no part of the value's path and are left out."""
    found: list[tuple[list[Any], str]] = []
    for problem in problems:
        if not str(problem.get("type", "")).startswith(_FORMAT_ERRORS):
            continue
        path: list[Any] = []
        here = value
        for part in problem.get("loc", ()):
            into_dict = isinstance(here, dict) and isinstance(part, str) and part in here
            into_list = isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here)
            if not (into_dict or into_list):
                continue  # a union branch or a type tag, not a step into the value
            here = here[part]
            path.append(part)
        found.append((path, str(problem.get("msg", "invalid"))))
    return found


def with_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` (valid for ``schema``) with the ``default`` of each property it lacks, as
    the flow's model fills them in (a ``TypedDict`` has none): the answer is stored as
    where the flow runs (``{"score": 7, "comment": "ok"}`` for ``{"score": 7}``). After
    validation: a model's default need not pass its own field's schema."""
    try:
        return _with_defaults(copy.deepcopy(value), schema, schema.get("$defs") or {}, 0)
    except RecursionError:  # nested deeper than Python copies: stored as it came
        return value


def _with_defaults(value: Any, schema: Any, defs: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return value
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.removeprefix("#/$defs/")) if ref.startswith("#/$defs/") else None
        return _with_defaults(value, target, defs, depth + 1)
    properties = schema.get("properties")
    if isinstance(value, dict) and isinstance(properties, dict):
        for name, sub in properties.items():
            if name in value:
                value[name] = _with_defaults(value[name], sub, defs, depth + 1)
            elif isinstance(sub, dict) and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [_with_defaults(item, schema["items"], defs, depth + 1) for item in value]
    return value


def _shape(schema: Any, defs: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return Any
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.removeprefix("#/$defs/")) if ref.startswith("#/$defs/") else None
        return _shape(target, defs, depth + 1)
    if "const" in schema:
        return Literal[schema["const"]] if _literal(schema["const"]) else Any
    if isinstance(schema.get("enum"), list):
        values = schema["enum"]
        return Literal[tuple(values)] if values and all(map(_literal, values)) else Any
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return Union[tuple(_shape(o, defs, depth + 1) for o in options)]  # noqa: UP007
    kind = schema.get("type")
    if isinstance(kind, list):
        return Union[tuple(_typed(k, schema, defs, depth) for k in kind)]  # noqa: UP007
    return _typed(kind, schema, defs, depth)


def _typed(kind: Any, schema: dict[str, Any], defs: dict[str, Any], depth: int) -> Any:
    if kind == "string" and isinstance(schema.get("format"), str):
        return _FORMATS.get(schema["format"], str)
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):  # a tuple of fixed length, else the JSON schema's alone
            if not prefix or schema.get("maxItems") != len(prefix):
                return Any
            return tuple[tuple(_shape(item, defs, depth + 1) for item in prefix)]  # type: ignore[misc]
        return list[_shape(schema.get("items"), defs, depth + 1)]  # type: ignore[misc]
    if kind == "object":
        properties = schema.get("properties")
        if isinstance(properties, dict) and properties:
            required = set(schema.get("required") or ())
            fields = {
                name: (Required if name in required else NotRequired)[_shape(sub, defs, depth + 1)]
                for name, sub in properties.items()
            }
            answer: Any = cast(Any, TypedDict("Answer", fields))  # type: ignore[operator]
            # Keys it does not name: refused (additionalProperties false), kept (true or a
            # schema, which checks them next), else dropped, as a Pydantic model drops them.
            extra = schema.get("additionalProperties")
            mode = "forbid" if extra is False else "allow" if extra is not None else "ignore"
            answer.__pydantic_config__ = {"extra": mode}
            return answer
        extra = schema.get("additionalProperties")
        return dict[str, _shape(extra, defs, depth + 1) if isinstance(extra, dict) else Any]  # type: ignore[misc]
    return Any


def _literal(value: Any) -> bool:
    return value is None or isinstance(value, str | int | bool)
