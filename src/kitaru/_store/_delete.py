"""Deleting an execution: its records, and the artifacts nothing else needs any more.

Kept out of ``store.py`` (which should not grow); it runs inside the store's write
transaction (``Store.delete_execution``).
"""

from __future__ import annotations

import sqlalchemy as sa

from kitaru._store import _events, _outputs, time_schema
from kitaru._store import schema as t


def delete_execution(conn: sa.Connection, exec_id: str) -> list[str]:
    """Delete ``exec_id`` on ``conn``; returns the blob URIs no artifact row uses any more.

    Candidates are the artifacts the execution owns and those its calls reused
    from other executions (cache, replay). One survives if a remaining call still
    points at it or its owning execution still exists. Outputs the execution kept
    in its call rows that other executions took become artifact rows first, so
    they survive the same way (``_outputs.keep_taken_outputs``).
    """
    c, a, at, ex = t.checkpoint_calls, t.artifacts, t.checkpoint_attempts, t.executions
    _outputs.keep_taken_outputs(conn, exec_id)
    owned = {r[0] for r in conn.execute(sa.select(a.c.id).where(a.c.exec_id == exec_id))}
    reused = {
        r[0]
        for r in conn.execute(
            sa.select(c.c.artifact_id).where(c.c.exec_id == exec_id, c.c.artifact_id.is_not(None))
        )
    }
    conn.execute(at.delete().where(at.c.exec_id == exec_id))
    conn.execute(t.waits.delete().where(t.waits.c.exec_id == exec_id))
    conn.execute(
        time_schema.suspensions.delete().where(time_schema.suspensions.c.exec_id == exec_id)
    )
    conn.execute(t.logs.delete().where(t.logs.c.exec_id == exec_id))
    _events.delete_events(conn, exec_id)
    conn.execute(c.delete().where(c.c.exec_id == exec_id))
    conn.execute(ex.delete().where(ex.c.id == exec_id))
    candidates = list(owned | reused)
    if not candidates:
        return []
    in_use = sa.select(c.c.artifact_id).where(c.c.artifact_id.in_(candidates))
    still_referenced = {r[0] for r in conn.execute(in_use)}
    owner_alive = {
        r[0]
        for r in conn.execute(
            sa.select(a.c.id)
            .select_from(a.join(ex, a.c.exec_id == ex.c.id))
            .where(a.c.id.in_(candidates))
        )
    }
    doomed = [aid for aid in candidates if aid not in still_referenced | owner_alive]
    if not doomed:
        return []
    uris = {
        r[0]
        for r in conn.execute(sa.select(a.c.uri).where(a.c.id.in_(doomed), a.c.uri.is_not(None)))
    }
    conn.execute(a.delete().where(a.c.id.in_(doomed)))
    still_used = {r[0] for r in conn.execute(sa.select(a.c.uri).where(a.c.uri.in_(list(uris))))}
    return sorted(uris - still_used)
