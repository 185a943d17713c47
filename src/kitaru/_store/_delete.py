"""Deleting an execution: its records, and the artifacts nothing else needs any more.

Kept out of ``store.py`` (which should not grow); it runs inside the store's write
transaction (``Store.delete_execution``).
"""

from __future__ import annotations

import sqlalchemy as sa

from kitaru._store import _events, _outputs, call_inputs, time_schema
from kitaru._store import schema as t


def delete_execution(conn: sa.Connection, exec_id: str) -> list[str]:
    """Delete ``exec_id`` on ``conn``; returns the blob URIs nothing refers to any more.

    Candidates are the artifacts the execution owns and those its calls reused
    from other executions (cache, replay). One survives if a remaining call still
    points at it or its owning execution still exists. Outputs the execution kept
    in its call rows that other executions took become artifact rows first, so
    they survive the same way (``_outputs.keep_taken_outputs``).

    A blob goes only when no artifact row and no remaining call's inputs refer to
    it: the blob store is content-addressed, so an output of one execution and an
    argument of another can be the same file. The execution's own large arguments
    are candidates too.
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
    argument_uris = set().union(
        *(
            call_inputs.blob_uris(r[0])
            for r in conn.execute(
                sa.select(c.c.inputs).where(c.c.exec_id == exec_id, c.c.inputs.is_not(None))
            )
        )
    )
    conn.execute(at.delete().where(at.c.exec_id == exec_id))
    conn.execute(t.waits.delete().where(t.waits.c.exec_id == exec_id))
    conn.execute(
        time_schema.suspensions.delete().where(time_schema.suspensions.c.exec_id == exec_id)
    )
    conn.execute(t.logs.delete().where(t.logs.c.exec_id == exec_id))
    _events.delete_events(conn, exec_id)
    conn.execute(c.delete().where(c.c.exec_id == exec_id))
    conn.execute(ex.delete().where(ex.c.id == exec_id))
    return sorted(_unreferenced(conn, _doomed_uris(conn, list(owned | reused)) | argument_uris))


def _doomed_uris(conn: sa.Connection, candidates: list[str]) -> set[str]:
    """Delete the candidate artifacts nothing needs any more; returns their blob URIs."""
    c, a, ex = t.checkpoint_calls, t.artifacts, t.executions
    if not candidates:
        return set()
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
        return set()
    uris = {
        r[0]
        for r in conn.execute(sa.select(a.c.uri).where(a.c.id.in_(doomed), a.c.uri.is_not(None)))
    }
    conn.execute(a.delete().where(a.c.id.in_(doomed)))
    return uris


def _unreferenced(conn: sa.Connection, uris: set[str]) -> set[str]:
    """Those of ``uris`` no artifact row and no call's packed inputs refer to."""
    if not uris:
        return set()
    a, c = t.artifacts, t.checkpoint_calls
    used = {r[0] for r in conn.execute(sa.select(a.c.uri).where(a.c.uri.in_(list(uris))))}
    left = uris - used
    # Arguments are packed JSON text: a scan, paid only for a large value being deleted.
    for uri in sorted(left):
        pattern = call_inputs.uri_pattern(uri)
        found = conn.execute(
            sa.select(c.c.exec_id).where(c.c.inputs.like(pattern, escape="\\")).limit(1)
        ).first()
        if found is not None:
            used.add(uri)
    return uris - used
