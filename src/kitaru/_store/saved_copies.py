"""A reused call keeps what ``kitaru.save`` wrote in the call it reuses.

A checkpoint answered from the cache, or reused by a replay, does not run: its output
is the source call's. What the source call saved with ``kitaru.save`` belongs to the
new call as well (``Execution.artifacts``, ``kitaru.load(new_exec_id, name)``, as in
Kitaru 0.21, whose cached steps kept all their outputs). Each saved artifact gets a
row of the new execution that points at the same bytes: an inline value is copied
(small by definition), a blob is shared by URI (deleting either execution keeps a
blob another row still uses, see ``_delete``).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable

from kitaru._store.records import ArtifactRecord


def copies_for(
    saved: Iterable[ArtifactRecord], *, exec_id: str, now: float, call_id: str | None = None
) -> list[ArtifactRecord]:
    """``saved`` as artifacts of ``exec_id`` (new ids, same values), of call ``call_id``
    (None: each of the call with its own call id, as a replay's reused calls)."""
    return [
        dataclasses.replace(
            artifact,
            id=str(uuid.uuid4()),
            exec_id=exec_id,
            call_id=artifact.call_id if call_id is None else call_id,
            tags=list(artifact.tags),
            created_at=now,
        )
        for artifact in saved
    ]
