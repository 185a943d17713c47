"""The stack registry: named, persisted execution targets.

Stacks live in the global config file (see :mod:`kitaru._paths`)::

    {"active_stack": "prod",
     "stacks": {"prod": {"id": "...", "name": "prod", "kind": "local",
                         "config": {...}, "created_at": "2025-01-01T00:00:00+00:00"}}}

The ``local`` stack is implicit: it is never written to the file, always
exists, has a fixed id and cannot be deleted. Without a persisted active stack
(or when it names a stack that no longer exists) ``local`` is the active one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kitaru._paths import (
    corrupt_config_error,
    read_global_config,
    read_global_config_shared,
    update_global_config,
)
from kitaru.errors import KitaruFeatureNotAvailableError, KitaruUsageError

LOCAL_STACK_NAME = "local"
# uuid5(NAMESPACE_URL, "https://kitaru.ai/stacks/local"): stable across machines
# and releases so records that name the local stack by id stay valid.
LOCAL_STACK_ID = "66f58154-ec79-5c2c-b1cb-7adcb407c661"
STACK_KINDS: tuple[str, ...] = ("local", "ray")

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_NAME_MAX_LEN = 128


@dataclass(frozen=True)
class StackInfo:
    """A stack as shown to users: its id, name, whether it is active, and its kind."""

    id: str
    name: str
    is_active: bool
    kind: str = "local"


# --- reading -------------------------------------------------------------------


def _local_record() -> dict[str, Any]:
    return {
        "id": LOCAL_STACK_ID,
        "name": LOCAL_STACK_NAME,
        "kind": "local",
        "config": {},
        "created_at": None,
    }


def _stored_stacks(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``stacks`` table of a config, validated (a bad shape is a corrupt file)."""
    table = data.get("stacks", {})
    if not isinstance(table, dict):
        raise corrupt_config_error(f"'stacks' must be an object, found {type(table).__name__}")
    for key, record in table.items():
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("id"), str)
            or record.get("name") != key
        ):
            raise corrupt_config_error(
                f"the entry for stack {key!r} must be an object with a string 'id' and "
                f"'name' equal to {key!r}"
            )
    return table


def _all_records(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    stored = _stored_stacks(data)
    return [_local_record(), *(stored[name] for name in sorted(stored))]


def _find_record(data: Mapping[str, Any], name_or_id: str) -> dict[str, Any] | None:
    if name_or_id == LOCAL_STACK_NAME or name_or_id.lower() == LOCAL_STACK_ID:
        return _local_record()
    stored = _stored_stacks(data)
    # Names win over ids: a name is what people type; ids are for records and scripts.
    if name_or_id in stored:
        return stored[name_or_id]
    lowered = name_or_id.lower()
    for record in stored.values():
        if record["id"].lower() == lowered:
            return record
    return None


def _active_name(data: Mapping[str, Any]) -> str | None:
    """The persisted active stack, or None if unset or pointing at a deleted stack."""
    active = data.get("active_stack")
    if not isinstance(active, str) or not active:
        return None
    record = _find_record(data, active)
    return None if record is None else str(record["name"])


def _info(record: Mapping[str, Any], active: str) -> StackInfo:
    name = str(record["name"])
    return StackInfo(
        id=str(record["id"]),
        name=name,
        is_active=name == active,
        kind=str(record.get("kind", "local")),
    )


def _check_ref(name_or_id: object, what: str) -> str:
    if not isinstance(name_or_id, str) or not name_or_id.strip():
        raise KitaruUsageError(
            f"{what} needs a stack name or id (a non-empty string), got {name_or_id!r}."
        )
    return name_or_id.strip()


def _unknown(name_or_id: str, data: Mapping[str, Any]) -> KitaruUsageError:
    known = ", ".join(str(r["name"]) for r in _all_records(data))
    return KitaruUsageError(
        f"No stack named (or with id) {name_or_id!r}. Known stacks: {known}. "
        f"Create it with `kitaru stack create {name_or_id}` or "
        f"kitaru.create_stack({name_or_id!r})."
    )


# --- public API ----------------------------------------------------------------


def list_stacks() -> list[StackInfo]:
    """All stacks, ``local`` first, then the others by name."""
    data = read_global_config()
    active = _active_name(data) or LOCAL_STACK_NAME
    return [_info(record, active) for record in _all_records(data)]


def current_stack() -> StackInfo:
    """The persisted active stack (``local`` if none was chosen).

    This is the user's default (``kitaru stack use``); a run may still pick
    another stack through ``.run(stack=...)``, ``@flow``, ``configure`` etc.
    """
    data = read_global_config()
    active = _active_name(data) or LOCAL_STACK_NAME
    record = _find_record(data, active)
    assert record is not None  # _active_name only returns existing stacks
    return _info(record, active)


def get_stack(name_or_id: str) -> StackInfo:
    """The stack with this name or id; unknown -> KitaruUsageError listing known stacks."""
    ref = _check_ref(name_or_id, "get_stack()")
    data = read_global_config()
    record = _find_record(data, ref)
    if record is None:
        raise _unknown(ref, data)
    return _info(record, _active_name(data) or LOCAL_STACK_NAME)


def find_stack(name_or_id: str) -> StackInfo | None:
    """Like :func:`get_stack` but returns None for an unknown stack."""
    ref = _check_ref(name_or_id, "find_stack()")
    data = read_global_config_shared()  # a .run() on a named stack asks
    record = _find_record(data, ref)
    if record is None:
        return None
    return _info(record, _active_name(data) or LOCAL_STACK_NAME)


def get_stack_record(name_or_id: str) -> dict[str, Any]:
    """The full stored record of a stack (id, name, kind, config, created_at).

    For launchers that need the stack's ``config``; returns a copy.
    """
    ref = _check_ref(name_or_id, "get_stack_record()")
    data = read_global_config()
    record = _find_record(data, ref)
    if record is None:
        raise _unknown(ref, data)
    import copy

    return copy.deepcopy(record)


def missing_active_stack() -> str | None:
    """The persisted active stack's name when it names no stack (else None).

    Runs then fall back to ``local``; ``kitaru status`` and ``kitaru stack current``
    say so rather than let it pass unnoticed.
    """
    data = read_global_config()
    active = data.get("active_stack")
    if not isinstance(active, str) or not active or _active_name(data) is not None:
        return None
    return active


def persisted_active_stack() -> str | None:
    """Name of the stack chosen with ``use_stack``, or None if none was chosen."""
    return _active_name(read_global_config_shared())  # every .run() without a stack asks


def use_stack(name_or_id: str) -> StackInfo:
    """Make a stack the persisted active stack for every later run of this user."""
    ref = _check_ref(name_or_id, "use_stack()")
    with update_global_config() as data:
        record = _find_record(data, ref)
        if record is None:
            raise _unknown(ref, data)
        data["active_stack"] = record["name"]
    return _info(record, str(record["name"]))


def create_stack(
    name: str,
    *,
    activate: bool = True,
    labels: Mapping[str, str] | None = None,
    kind: str = "local",
    config: Mapping[str, Any] | None = None,
    address: str | None = None,
    artifact_store: str | None = None,
    runtime_env: Mapping[str, Any] | str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: Mapping[str, float] | str | None = None,
) -> StackInfo:
    """Create a named stack and make it the active one (as Kitaru 0.21 does).

    ``activate=False`` leaves the active stack as it is. ``labels`` are free
    string key/value tags kept with the stack. A ``ray`` stack needs
    ``address`` (what ``ray.init`` takes) and may set ``artifact_store``,
    ``runtime_env`` (a mapping or JSON text), ``num_cpus``, ``num_gpus`` and
    ``resources`` (custom Ray resources, a mapping or JSON text).
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or len(name) > _NAME_MAX_LEN:
        raise KitaruUsageError(
            f"Invalid stack name {name!r}: use 1-{_NAME_MAX_LEN} letters, digits, '-' or '_'."
        )
    if kind not in STACK_KINDS:
        raise KitaruFeatureNotAvailableError(
            f"Stack kind {kind!r} is not available for stack {name!r}. "
            f"Available kinds: {', '.join(STACK_KINDS)}."
        )
    if not isinstance(activate, bool):
        raise KitaruUsageError(
            f"create_stack(activate=...) must be True or False, got {activate!r}."
        )
    stack_config = _checked_config(name, config)
    options = {
        "address": address,
        "artifact_store": artifact_store,
        "runtime_env": runtime_env,
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "resources": resources,
    }
    if kind == "ray":
        from kitaru._stacks.ray_config import ray_stack_config

        stack_config.update(ray_stack_config(name, **options))
    else:
        given = [option for option, value in options.items() if value is not None]
        if given:
            raise KitaruUsageError(
                f"{', '.join(given)} only apply to ray stacks; stack {name!r} is {kind!r}. "
                f"Use kind='ray' (`--type ray`) to run on a Ray cluster."
            )
    stack_labels = _checked_labels(name, labels)

    import uuid
    from datetime import UTC, datetime

    with update_global_config() as data:
        stored = _stored_stacks(data)
        # Case-insensitive: 'Prod' next to 'prod' would be a trap on the CLI.
        taken = {n.lower() for n in stored} | {LOCAL_STACK_NAME}
        if name.lower() in taken:
            existing = next(n for n in [LOCAL_STACK_NAME, *stored] if n.lower() == name.lower())
            raise KitaruUsageError(
                f"A stack named {existing!r} already exists; choose another name for {name!r} "
                f"or delete the existing one with `kitaru stack delete {existing}`."
            )
        record: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "name": name,
            "kind": kind,
            "config": stack_config,
            "created_at": datetime.now(UTC).isoformat(),
        }
        if stack_labels:
            record["labels"] = stack_labels
        stored[name] = record
        data["stacks"] = stored
        if activate:
            data["active_stack"] = name
        active = _active_name(data) or LOCAL_STACK_NAME
    return _info(record, active)


def delete_stack(name_or_id: str, *, recursive: bool = False, force: bool = False) -> None:
    """Delete a stack. ``local`` cannot be deleted; the active stack only with ``force``.

    Force-deleting the active stack makes ``local`` active again. ``recursive``
    is accepted for Kitaru 0.21 code, where it also deleted the stack's ZenML
    components; Kitaru stacks own no separate components, so there is nothing more
    to delete.
    """
    ref = _check_ref(name_or_id, "delete_stack()")
    for option, value in (("recursive", recursive), ("force", force)):
        if not isinstance(value, bool):
            raise KitaruUsageError(
                f"delete_stack({option}=...) must be True or False, got {value!r}."
            )
    with update_global_config() as data:
        record = _find_record(data, ref)
        if record is None:
            raise _unknown(ref, data)
        name = str(record["name"])
        if name == LOCAL_STACK_NAME:
            raise KitaruUsageError(
                "The 'local' stack is built in and cannot be deleted. "
                "Switch to another stack with `kitaru stack use NAME` instead."
            )
        is_active = _active_name(data) == name
        if is_active and not force:
            raise KitaruUsageError(
                f"Stack {name!r} is the active stack. Switch first with "
                f"`kitaru stack use local`, or delete it with force=True "
                f"(`--force`), which makes 'local' active."
            )
        del _stored_stacks(data)[name]
        if is_active or data.get("active_stack") == name:
            data.pop("active_stack", None)


def _checked_labels(name: str, labels: Mapping[str, str] | None) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise KitaruUsageError(
            f"create_stack(labels=...) for stack {name!r} must map strings to strings, "
            f"got {labels!r}."
        )
    return dict(labels)


def _checked_config(name: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise KitaruUsageError(
            f"create_stack(config=...) for stack {name!r} must be a mapping, "
            f"got {type(config).__name__}."
        )
    import json

    result = {str(k): v for k, v in config.items()}
    try:
        # Round-trip so that later mutation of the caller's objects cannot leak in.
        copied: dict[str, Any] = json.loads(json.dumps(result))
    except (TypeError, ValueError) as exc:
        raise KitaruUsageError(
            f"create_stack(config=...) for stack {name!r} must be JSON-serializable "
            f"(strings, numbers, booleans, lists, mappings): {exc}."
        ) from exc
    return copied


__all__ = [
    "LOCAL_STACK_ID",
    "LOCAL_STACK_NAME",
    "STACK_KINDS",
    "StackInfo",
    "create_stack",
    "current_stack",
    "delete_stack",
    "find_stack",
    "get_stack",
    "get_stack_record",
    "list_stacks",
    "missing_active_stack",
    "persisted_active_stack",
    "use_stack",
]
