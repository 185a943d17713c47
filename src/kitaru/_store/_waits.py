"""Waits in the store: opening, answering and releasing ``kitaru.wait()`` points.

A mixin of :class:`~kitaru._store.store.Store`; every guarded write is fenced
like the store's others.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from kitaru._lazy import LazyModule
from kitaru._store._rows import _ACTIVE_VALUES, _by_exec, _changed, _wait_from_row, _wait_row
from kitaru._store._statements import dialect_insert
from kitaru._store.records import ExecutionStatus, StaleOwnerError, WaitStatus

if TYPE_CHECKING:
    import sqlalchemy as sa

    from kitaru._store import schema as t
    from kitaru._store.records_extra import WaitRecord
else:  # imported on first use (see _lazy)
    sa = LazyModule("sqlalchemy")
    t = LazyModule("kitaru._store.schema")


class _StoreCore(Protocol):
    """What the wait methods use of the store."""

    _is_sqlite: bool

    @property
    def _owner_query(self) -> Any: ...

    def write(self) -> contextlib.AbstractContextManager[sa.Connection]: ...

    def read(self) -> contextlib.AbstractContextManager[sa.Connection]: ...

    def _stale(self, exec_id: str, fence: int | None) -> StaleOwnerError: ...


class WaitsMixin:
    def waits(self: _StoreCore, exec_id: str) -> list[WaitRecord]:
        return WaitsMixin.waits_of(self, [exec_id]).get(exec_id, [])

    def waits_of(self: _StoreCore, exec_ids: Sequence[str]) -> dict[str, list[WaitRecord]]:
        w = t.waits
        with self.read() as conn:
            rows = conn.execute(
                sa.select(w).where(w.c.exec_id.in_(list(exec_ids))).order_by(w.c.created_at)
            ).all()
        return _by_exec([_wait_from_row(row._mapping) for row in rows])

    def pending_waits(self: _StoreCore, exec_id: str | None = None) -> list[WaitRecord]:
        """Pending waits of one execution, or of every waiting execution."""
        w, ex = t.waits, t.executions
        query = (
            sa.select(w)
            .select_from(w.join(ex, w.c.exec_id == ex.c.id))
            .where(
                w.c.status == WaitStatus.PENDING.value,
                ex.c.status == ExecutionStatus.WAITING.value,
            )
            .order_by(w.c.created_at)
        )
        if exec_id is not None:
            query = query.where(w.c.exec_id == exec_id)
        with self.read() as conn:
            rows = conn.execute(query).all()
        return [_wait_from_row(row._mapping) for row in rows]

    def open_wait(self: _StoreCore, wait: WaitRecord, *, fence: int) -> WaitRecord:
        """Record a pending wait (once) and mark the execution waiting, under the fence.

        Returns the stored wait, which may already be answered (input arrived
        between a previous run and this one).
        """
        w, ex = t.waits, t.executions
        insert = dialect_insert(self._is_sqlite)(w)
        with self.write() as conn:
            row = conn.execute(self._owner_query, {"exec_id": wait.exec_id}).first()
            if row is None or row[0] != fence or row[1] not in _ACTIVE_VALUES:
                raise self._stale(wait.exec_id, fence)
            conn.execute(
                insert.on_conflict_do_nothing(index_elements=["exec_id", "wait_id"]),
                _wait_row(wait),
            )
            stored = conn.execute(
                sa.select(w).where(w.c.exec_id == wait.exec_id, w.c.wait_id == wait.wait_id)
            ).first()
            assert stored is not None
            record = _wait_from_row(stored._mapping)
            if record.status is WaitStatus.PENDING:
                # A body waits at one place at a time: a pending wait this run did not
                # reach (another branch) can no longer be answered usefully.
                conn.execute(
                    w.update()
                    .where(
                        w.c.exec_id == wait.exec_id,
                        w.c.wait_id != wait.wait_id,
                        w.c.status == WaitStatus.PENDING.value,
                    )
                    .values(status=WaitStatus.SUPERSEDED.value)
                )
                conn.execute(
                    ex.update()
                    .where(ex.c.id == wait.exec_id)
                    .values(status=ExecutionStatus.WAITING.value)
                )
        return record

    def get_wait(self: _StoreCore, exec_id: str, wait_id: str) -> WaitRecord | None:
        w = t.waits
        with self.read() as conn:
            row = conn.execute(
                sa.select(w).where(w.c.exec_id == exec_id, w.c.wait_id == wait_id)
            ).first()
        return None if row is None else _wait_from_row(row._mapping)

    def answer_wait(
        self: _StoreCore, exec_id: str, wait_id: str, *, status: WaitStatus, value: Any = None
    ) -> bool:
        """Resolve a pending wait; False if it was not pending any more."""
        w = t.waits
        with self.write() as conn:
            changed = _changed(
                conn,
                w.update()
                .where(
                    w.c.exec_id == exec_id,
                    w.c.wait_id == wait_id,
                    w.c.status == WaitStatus.PENDING.value,
                )
                .values(status=status.value, value=value, answered_at=time.time()),
            )
        return changed

    def continue_after_wait(self: _StoreCore, exec_id: str, *, fence: int) -> bool:
        """The runner got its answer: waiting -> running, under the fence."""
        ex = t.executions.c
        with self.write() as conn:
            changed = _changed(
                conn,
                t.executions.update()
                .where(
                    ex.id == exec_id,
                    ex.fence == fence,
                    ex.status == ExecutionStatus.WAITING.value,
                )
                .values(status=ExecutionStatus.RUNNING.value),
            )
        return changed

    def release_waiting(self: _StoreCore, exec_id: str, wait_id: str, *, fence: int) -> bool:
        """Let go of a waiting execution (no lease held) unless its wait was answered.

        Conditional in one statement, so that input arriving at the same moment
        is never lost: either the runner sees the answer, or the input giver sees
        a released execution and resumes it.
        """
        ex, w = t.executions.c, t.waits.c
        answered = (
            sa.select(sa.literal(1))
            .where(
                w.exec_id == exec_id,
                w.wait_id == wait_id,
                w.status != WaitStatus.PENDING.value,
            )
            .exists()
        )
        with self.write() as conn:
            changed = _changed(
                conn,
                t.executions.update()
                .where(
                    ex.id == exec_id,
                    ex.fence == fence,
                    ex.status == ExecutionStatus.WAITING.value,
                    ~answered,
                )
                .values(lease_owner=None, lease_expires_at=None),
            )
        return changed
