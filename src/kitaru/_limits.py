"""Size limits on what users hand to Kitaru: flow inputs and answers to waits.

Both end up in the store and in the memory of every process that runs the
execution, so an accidental multi-gigabyte argument should fail at once with
a clear message rather than exhaust memory or bloat the database. Checkpoint
outputs are not limited: they are the place for large data (blob store).

Settings (each also ``kitaru.configure(max_..._bytes=...)`` and ``max_..._bytes`` under
[tool.kitaru]; see ``_limit`` for the precedence; read at each check so a long-lived
process can change them):

* ``KITARU_MAX_FLOW_INPUT_BYTES``: serialized size of all inputs of one
  execution (``.run(...)`` arguments, a replay's flow inputs); default 8 MiB.
* ``KITARU_MAX_WAIT_INPUT_BYTES``: JSON size of one answer to a wait; default
  1 MiB.

Values are a byte count with an optional unit (``64MiB``, ``512KB``, ``1G``;
K/M/G count in 1024s) or ``unlimited``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final, cast

from kitaru import _environ
from kitaru.errors import KitaruUsageError, KitaruWaitValidationError

ENV_MAX_FLOW_INPUT_BYTES: Final = "KITARU_MAX_FLOW_INPUT_BYTES"
ENV_MAX_WAIT_INPUT_BYTES: Final = "KITARU_MAX_WAIT_INPUT_BYTES"

MIB: Final = 1024 * 1024
DEFAULT_MAX_FLOW_INPUT_BYTES: Final = 8 * MIB
DEFAULT_MAX_WAIT_INPUT_BYTES: Final = 1 * MIB

_SIZE_RE: Final = re.compile(r"^(\d+)\s*([kmg]?)(i?b)?$", re.IGNORECASE)
_UNITS: Final = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}
_UNLIMITED: Final = frozenset({"unlimited", "none", "off"})


#: The twin settings: ``kitaru.configure(<key>=...)`` and ``<key>`` under [tool.kitaru].
KEY_MAX_FLOW_INPUT_BYTES: Final = "max_flow_input_bytes"
KEY_MAX_WAIT_INPUT_BYTES: Final = "max_wait_input_bytes"


def parse_size(value: object, *, setting: str, where: str, default: int) -> int | None:
    """A size setting's value in bytes; None means unlimited. Raises on anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str):
        raw = value.strip()
        if raw.lower() in _UNLIMITED:
            return None
        match = _SIZE_RE.match(raw)
        if match:
            size = int(match.group(1)) * _UNITS[match.group(2).lower()]
            if size >= 1:
                return size
    raise KitaruUsageError(
        f"{setting} must be a positive size in bytes, optionally with a unit (e.g. "
        f"{default}, '64MiB', '1GiB'), or 'unlimited'; got {value!r} ({where})."
    )


def validate_size_setting(value: object, *, key: str, where: str) -> int | str | None:
    """Check a ``configure()``/pyproject value now; it is stored as given (None = not set)."""
    if value is None:
        return None
    default = {
        KEY_MAX_FLOW_INPUT_BYTES: DEFAULT_MAX_FLOW_INPUT_BYTES,
        KEY_MAX_WAIT_INPUT_BYTES: DEFAULT_MAX_WAIT_INPUT_BYTES,
    }[key]
    parse_size(value, setting=key, where=where, default=default)  # raises unless a size
    return cast("int | str", value)


def _limit(key: str, env: str, default: int) -> int | None:
    """The limit in force; None means unlimited.

    Precedence, highest first: ``kitaru.configure(<key>=...)``, the environment
    variable ``env``, ``<key>`` under [tool.kitaru] of the nearest pyproject.toml,
    the default. Read at each check, so a long-lived process can change it.
    """
    from kitaru._pyproject import pyproject_table
    from kitaru.config import current_configuration

    configured = getattr(current_configuration(), key)
    if configured is not None:
        return parse_size(
            configured, setting=key, where=f"kitaru.configure({key}=...)", default=default
        )
    raw = _environ.get(env, "").strip()
    if raw:
        return parse_size(
            raw, setting=env, where="fix or unset the environment variable", default=default
        )
    found = pyproject_table(strict=False)
    if found is not None:
        path, table = found
        if table.get(key) is not None:
            where = f"`{key}` under [tool.kitaru] in {path}"
            return parse_size(table[key], setting=key, where=where, default=default)
    return default


def max_flow_input_bytes() -> int | None:
    return _limit(KEY_MAX_FLOW_INPUT_BYTES, ENV_MAX_FLOW_INPUT_BYTES, DEFAULT_MAX_FLOW_INPUT_BYTES)


def max_wait_input_bytes() -> int | None:
    return _limit(KEY_MAX_WAIT_INPUT_BYTES, ENV_MAX_WAIT_INPUT_BYTES, DEFAULT_MAX_WAIT_INPUT_BYTES)


def human_size(size: int) -> str:
    """``size`` in the largest binary unit that keeps it >= 1 (``8 MiB``, ``1.5 KiB``)."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            if unit == "bytes":
                return f"{size} bytes"
            return f"{value:.1f}".removesuffix(".0") + f" {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def check_flow_inputs(total: int, sizes: Sequence[tuple[str, int]], *, what: str) -> None:
    """Refuse flow inputs whose serialized ``total`` exceeds the limit.

    ``sizes`` are ``(input name, serialized size)`` pairs; the message names
    the largest, which is what the user has to shrink.
    """
    limit = max_flow_input_bytes()
    if limit is None or total <= limit:
        return
    largest = sorted(sizes, key=lambda item: item[1], reverse=True)[:3]
    named = ", ".join(f"{name!r}: {human_size(size)}" for name, size in largest)
    raise KitaruUsageError(
        f"{what} are too large: {human_size(total)} ({total} bytes) serialized"
        f"{f' (input {named})' if named else ''}, over the limit of {human_size(limit)} "
        f"({limit} bytes). Pass large data by reference (a file path or URL the flow reads, "
        f"or produce it in a checkpoint), or raise the limit with the environment variable "
        f"{ENV_MAX_FLOW_INPUT_BYTES} (e.g. {ENV_MAX_FLOW_INPUT_BYTES}=256MiB or 'unlimited'), "
        f"kitaru.configure({KEY_MAX_FLOW_INPUT_BYTES}=...) or `{KEY_MAX_FLOW_INPUT_BYTES}` "
        "under [tool.kitaru]."
    )


def check_wait_input(value: Any, *, wait_id: str, exec_id: str) -> None:
    """Refuse an answer to a wait whose stored JSON would exceed the limit.

    ``value`` is the validated answer as JSON data (what the store writes).
    """
    limit = max_wait_input_bytes()
    if limit is None:
        return
    size = _json_size(value)
    if size <= limit:
        return
    raise KitaruWaitValidationError(
        f"Input for wait {wait_id!r} of execution {exec_id} is too large: {human_size(size)} "
        f"({size} bytes) as JSON, over the limit of {human_size(limit)} ({limit} bytes); "
        "nothing was recorded and the execution is still waiting. Answer with a reference "
        "(a file path or URL) instead of the data, or raise the limit with the environment "
        f"variable {ENV_MAX_WAIT_INPUT_BYTES} (e.g. {ENV_MAX_WAIT_INPUT_BYTES}=16MiB), "
        f"kitaru.configure({KEY_MAX_WAIT_INPUT_BYTES}=...) or `{KEY_MAX_WAIT_INPUT_BYTES}` "
        "under [tool.kitaru]."
    )


def _json_size(value: Any) -> int:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return 0  # the store refuses it with its own error
    return len(text.encode("utf-8", errors="surrogatepass"))


__all__ = [
    "DEFAULT_MAX_FLOW_INPUT_BYTES",
    "DEFAULT_MAX_WAIT_INPUT_BYTES",
    "ENV_MAX_FLOW_INPUT_BYTES",
    "ENV_MAX_WAIT_INPUT_BYTES",
    "KEY_MAX_FLOW_INPUT_BYTES",
    "KEY_MAX_WAIT_INPUT_BYTES",
    "check_flow_inputs",
    "check_wait_input",
    "human_size",
    "max_flow_input_bytes",
    "max_wait_input_bytes",
]


#: The longest flow or checkpoint name the stores keep (``VARCHAR(255)`` columns), and
#: the longest checkpoint ``type=`` label (``VARCHAR(64)``).
MAX_NAME, MAX_TYPE_LABEL = 255, 64


def check_name(name: str, what: str) -> str:
    """``name`` of a flow or checkpoint, if the stores can keep it; else a usage error at
    decoration (PostgreSQL refused a longer one when the call was recorded, failing the
    whole execution)."""
    if len(name) > MAX_NAME:
        raise KitaruUsageError(
            f"The {what} name {name[:40]!r}... is {len(name)} characters long; the store "
            f"keeps at most {MAX_NAME}. Give the function a shorter name."
        )
    return name
