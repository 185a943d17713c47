"""Short ids: any unique prefix (4+ characters) of an execution or artifact id.

Tables print the first 8 characters of an id; every client method that takes
an id accepts such a prefix. Resolution is one indexed query (two for artifacts:
a checkpoint output kept in its call row has the id ``<exec_id>:out:<seq>``, so a
prefix of an execution id is a prefix of its outputs' ids too); an ambiguous
prefix is refused with the candidates named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kitaru.errors import KitaruUsageError

if TYPE_CHECKING:
    from kitaru._store._lookup import IdTable
    from kitaru._store.store import Store

#: Shorter text is only ever an exact id.
MIN_PREFIX = 4
#: Ids are UUID strings: text this long is a whole id, no prefix query needed.
FULL_ID_LENGTH = 36
#: How many candidates an ambiguity error names.
_SHOWN = 5

_WHAT = {"executions": "execution", "artifacts": "artifact"}


def id_text(ref: object, what: str) -> str:
    """``ref`` as id text: a string, or a ``uuid.UUID``; a UUID written in capitals
    in its usual form reads as the lower-case one ids are stored as.

    Anything else is a ``KitaruUsageError`` naming what was given.
    """
    if isinstance(ref, str):
        text = ref
    elif type(ref).__name__ == "UUID" and type(ref).__module__ == "uuid":
        return str(ref)
    else:
        raise KitaruUsageError(
            f"An {what} id must be a string (or a uuid.UUID), got {type(ref).__name__} {ref!r}."
        )
    if len(text) == FULL_ID_LENGTH and text != text.lower():
        import uuid

        try:
            return str(uuid.UUID(text))
        except ValueError:
            return text
    return text


def resolve_id(store: Store, table: IdTable, ref: str) -> str:
    """The full id that ``ref`` (an id or a unique prefix of one) names.

    Text that matches no id comes back unchanged, so that the caller's lookup
    reports it as unknown the usual way. An ambiguous prefix raises
    ``KitaruUsageError`` listing the ids it matches; an id that is not text (or a
    ``uuid.UUID``), a ``KitaruUsageError`` too.
    """
    ref = id_text(ref, _WHAT[table])
    if len(ref) < MIN_PREFIX or len(ref) >= FULL_ID_LENGTH or not _storable(ref):
        return ref
    from kitaru._store._lookup import ids_with_prefix  # SQLAlchemy: not at `import kitaru`

    found = ids_with_prefix(store, table, ref, limit=_SHOWN + 1)
    if table == "artifacts":
        found = sorted({*found, *_output_ids_with_prefix(store, ref, limit=_SHOWN + 1)})
    if ref in found or not found:
        return ref
    if len(found) == 1:
        return found[0]
    what = _WHAT[table]
    listed = ", ".join(found[:_SHOWN]) + (", …" if len(found) > _SHOWN else "")
    raise KitaruUsageError(
        f"The {what} id prefix {ref!r} is ambiguous: it matches {listed}. "
        f"Give more characters of the {what} id."
    )


def _output_ids_with_prefix(store: Store, prefix: str, *, limit: int) -> list[str]:
    """Up to ``limit`` ids of in-row checkpoint outputs (``<exec_id>:out:<seq>``) that
    start with ``prefix`` (shorter than an execution id), in id order."""
    import sqlalchemy as sa

    from kitaru._store import schema
    from kitaru._store._lookup import _escape_like, _next_prefix
    from kitaru._store.call_outputs import output_id

    c = schema.checkpoint_calls.c
    query = (
        sa.select(c.exec_id, c.seq)
        .where(c.exec_id.like(_escape_like(prefix) + "%", escape="\\"))
        .where(c.output_serializer.is_not(None))
        .order_by(c.exec_id, c.seq)
        .limit(limit)
    )
    if store.engine.dialect.name == "sqlite":  # a range on the key's index (see _lookup)
        query = query.where(c.exec_id >= prefix)
        upper = _next_prefix(prefix)
        if upper is not None:
            query = query.where(c.exec_id < upper)
    with store.read() as conn:
        return [output_id(exec_id, seq) for exec_id, seq in conn.execute(query).all()]


def _storable(text: str) -> bool:
    """Whether a database can hold ``text`` (undecodable argv bytes cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text
