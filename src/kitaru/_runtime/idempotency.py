"""Idempotent starts: ``.run(..., execution_id=...)`` starts at most one execution per id.

A UUID is used as the execution id itself; any other string (a webhook's
delivery id, a caller's request id) is the execution's ``idempotency_key`` and
its id is derived from it (UUID5), so the store's primary key is what makes
the start idempotent: of any number of processes starting the same id, one
inserts the execution and the others get that one back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kitaru._text import storable_text
from kitaru.errors import KitaruStateError, KitaruUsageError

if TYPE_CHECKING:
    from kitaru._backend import Backend
    from kitaru._store import ExecutionRecord

#: Longest ``execution_id=`` string (the store's ``idempotency_key`` column).
MAX_KEY = 255
_NAMESPACE = "6f1d3c52-2a7e-4f3e-9a51-6b8f6d2b7c10"
# ``uuid`` is imported where used: it imports ``platform`` (a few ms of every script's
# start-up), and most starts give no ``execution_id=``.


def execution_ids(value: Any, *, where: str) -> tuple[str, str | None]:
    """``(exec_id, idempotency_key)`` for an ``execution_id=`` (a UUID has no key)."""
    import uuid

    if isinstance(value, uuid.UUID):
        return str(value), None
    if not isinstance(value, str) or not value:
        raise KitaruUsageError(
            f"execution_id= in {where} must be a non-empty string (at most {MAX_KEY} "
            f"characters) or a uuid.UUID, got {value!r}."
        )
    if "\x00" in value or not storable_text(value):
        raise KitaruUsageError(
            f"execution_id= in {where} must be ordinary text: {value[:60]!r} holds a NUL "
            "character or undecodable characters, which no store keeps."
        )
    if len(value) > MAX_KEY:
        raise KitaruUsageError(
            f"execution_id= in {where} must be at most {MAX_KEY} characters, got "
            f"{len(value)} characters. Hash longer keys first."
        )
    try:
        return str(uuid.UUID(value)), None
    except ValueError:
        return str(uuid.uuid5(uuid.UUID(_NAMESPACE), value)), value


def child_exec_id(parent_exec_id: str, call_id: str) -> str:
    """The id of the child a parent's call starts: the same on every resume."""
    import uuid

    return str(uuid.uuid5(uuid.UUID(_NAMESPACE), f"child:{parent_exec_id}/{call_id}"))


def check_same_start(
    backend: Backend,
    existing: ExecutionRecord,
    *,
    flow_name: str,
    inputs_sha: str | None,
    given: str,
) -> None:
    """An existing execution under this id must be the same flow with the same inputs.

    ``inputs_sha`` None: only the flow is compared (a derived id is the same start).
    """
    if existing.flow_name != flow_name:
        raise KitaruStateError(
            f"execution_id={given!r} is already execution {existing.id} of flow "
            f"{existing.flow_name!r}, not of flow {flow_name!r}. Use another execution_id "
            "for a different flow."
        )
    stored = (
        None
        if existing.inputs_artifact_id is None or inputs_sha is None
        else backend.store.get_artifact(existing.inputs_artifact_id)
    )
    if stored is not None and inputs_sha is not None and stored.sha256 != inputs_sha:
        raise KitaruStateError(
            f"execution_id={given!r} is already execution {existing.id} of flow "
            f"{flow_name!r} with other inputs. A repeated start must pass the same inputs; "
            "use another execution_id to start it with these."
        )
