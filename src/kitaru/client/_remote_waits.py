"""Answers to waits that travel as JSON (through a Kitaru server): checked before they go.

Where the flow runs, ``input(...)`` validates a Python value with the wait's own type.
Through a server only JSON travels, and JSON has no NaN or Infinity, no datetimes, no
UUIDs: a value that cannot be said in JSON would be refused, changed (a datetime
turned into text for a ``str`` wait) or lost (NaN read back as null) on the way. So
the remote client turns an answer into JSON the way the wait's type would take it, and
refuses what that type would refuse, before sending; the server refuses non-finite
numbers too (other clients, a ``"NaN"`` text coerced to a float).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any

from kitaru.errors import KitaruWaitValidationError

#: What refuses an answer, next to each problem, for a form to show it by its field.
_FINITE = "finite"


def _label(wait: str | None, exec_id: str) -> str:
    which = f"wait {wait!r}" if wait is not None else "the pending wait"
    return f"{which} of execution {exec_id}"


def non_finite(value: Any) -> list[tuple[list[str | int], float]]:
    """Where ``value`` (JSON data) holds NaN, Infinity or -Infinity, and which."""
    found: list[tuple[list[str | int], float]] = []
    # A stack, not recursion: an answer may be nested deeper than Python recurses.
    stack: list[tuple[list[str | int], Any]] = [([], value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                found.append((path, item))
        elif isinstance(item, dict):
            stack.extend(([*path, str(k)], v) for k, v in item.items())
        elif isinstance(item, list | tuple):
            stack.extend(([*path, i], v) for i, v in enumerate(item))
    found.sort(key=lambda entry: [str(p) for p in entry[0]])
    return found


def refuse_non_finite(value: Any, *, wait: str | None, exec_id: str) -> None:
    """``KitaruWaitValidationError`` if ``value`` holds a number JSON cannot carry."""
    found = non_finite(value)
    if not found:
        _refuse_unwritable(value, wait=wait, exec_id=exec_id)
        return
    shown = "; ".join(f"{'/'.join(map(str, path)) or '(the value)'}: {n}" for path, n in found[:5])
    raise KitaruWaitValidationError(
        f"Input for {_label(wait, exec_id)} holds a number JSON cannot carry ({shown}); "
        "NaN, Infinity and -Infinity cannot be recorded as an answer. Nothing was recorded "
        "and the execution is still waiting: send a finite number (or null or text, if the "
        "wait's schema takes them).",
        details=[
            {
                "path": path,
                "message": f"{number} is not a finite number; JSON cannot carry it",
                "keyword": _FINITE,
            }
            for path, number in found[:50]
        ],
    )


def _refuse_unwritable(value: Any, *, wait: str | None, exec_id: str) -> None:
    """Refuse JSON data Python cannot write as JSON text: an integer of more than
    ``sys.get_int_max_str_digits()`` digits (4,300 by default)."""
    try:
        json.dumps(value)
    except ValueError as exc:
        raise KitaruWaitValidationError(
            f"Input for {_label(wait, exec_id)} cannot be recorded as JSON ({exc}). Nothing "
            "was recorded and the execution is still waiting: send a smaller number, or the "
            "number as text if the wait's schema takes text."
        ) from None
    except (TypeError, RecursionError):
        return  # not for this check: the wait's type or the size limit says what is wrong


def plain(value: Any) -> tuple[Any, bool]:
    """``_plain``; a value nested deeper than Python recurses is left to the wait's type."""
    try:
        return _plain(value)
    except RecursionError:
        return value, False


def _plain(value: Any) -> tuple[Any, bool]:
    """``value`` with models, dataclasses and enums as their JSON data (as the wait's type
    takes them where the flow runs, and as they validated themselves), tuples as lists;
    and whether what is left is plain JSON (None, bool, int, float, str, lists and
    dicts with str keys). Other values (a datetime, a UUID, a set...) are kept as they
    are, for the wait's type to judge (see :func:`json_answer`)."""
    from pydantic import BaseModel
    from pydantic_core import to_jsonable_python

    if value is None or isinstance(value, bool | int | float | str):
        return value, True
    if isinstance(value, BaseModel | enum.Enum) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        try:
            return to_jsonable_python(value), True
        except Exception:
            return value, False
    if isinstance(value, list | tuple):
        items = [_plain(item) for item in value]
        return [item for item, _ in items], all(ok for _, ok in items)
    if isinstance(value, dict):
        entries = {key: _plain(item) for key, item in value.items()}
        converted = {key: item for key, (item, _) in entries.items()}
        return converted, all(isinstance(k, str) and ok for k, (_, ok) in entries.items())
    return value, False


def json_answer(
    value: Any, schema: dict[str, Any] | None, *, wait: str | None, exec_id: str
) -> Any:
    """A value that is not plain JSON, as JSON: coerced by the type the wait's JSON
    schema describes, as the flow's own type would coerce it (a datetime for a datetime
    wait becomes its ISO text); refused with ``KitaruWaitValidationError`` where that
    type refuses it (a datetime for a ``str`` wait), as a local ``input`` would be."""
    from pydantic_core import to_jsonable_python

    from kitaru._lax_answers import coerce
    from kitaru._runtime.control import MAX_INPUT_DETAILS

    if schema is not None:
        coerced, problems = coerce(value, schema)
        if problems:
            details = [
                {
                    "path": [p for p in problem.get("loc", ()) if isinstance(p, str | int)],
                    "message": str(problem.get("msg", "invalid")),
                    "keyword": str(problem.get("type", "")),
                }
                for problem in problems[:MAX_INPUT_DETAILS]
            ]
            shown = "; ".join(
                f"{'/'.join(map(str, d['path'])) or '(the value)'}: {d['message']}"
                for d in details[:5]
            )
            raise KitaruWaitValidationError(
                f"Input for {_label(wait, exec_id)} does not match its schema: {shown} (a "
                f"{type(value).__name__} is sent as JSON, and the wait's type does not take "
                "it so). Nothing was sent and the execution is still waiting; send a "
                "corrected value.",
                details=details,
            )
        value = coerced
    try:
        return to_jsonable_python(value)
    except Exception as exc:  # no JSON form (RecursionError included)
        raise KitaruWaitValidationError(
            f"Input for {_label(wait, exec_id)} is a {type(value).__name__}, which has no "
            f"JSON form ({exc}); nothing was sent and the execution is still waiting. Send "
            "JSON data: None, bools, numbers, text, and lists and dicts of them."
        ) from None


def body_size(body: Any) -> int:
    """Bytes of ``body`` as the client sends it (httpx: compact, UTF-8, not escaped)."""
    try:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):  # not sent as is: the server says why
        return 0
    return len(text.encode("utf-8", errors="surrogatepass"))


def too_large(size: int, cap: int, *, wait: str | None, exec_id: str) -> KitaruWaitValidationError:
    """The error for an answer the server would refuse for its size, before sending it."""
    return KitaruWaitValidationError(
        f"Input for {_label(wait, exec_id)} is too large for the server: {size} bytes as "
        f"JSON, over the {cap} bytes it takes for an answer (KITARU_MAX_WAIT_INPUT_BYTES "
        "where the server runs). Nothing was sent and the execution is still waiting; "
        "answer with a reference (a file path or URL) instead of the data, or have the "
        "server's limit raised."
    )
