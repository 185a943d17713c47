"""Durable time in the store: sleeps and child joins, idempotent starts, schedules.

A mixin of :class:`~kitaru._store.store.Store`. Writes that a runner makes for
its own execution are fenced like the store's others (the execution must still
be running under the runner's fence); every guarded write confirms with
RETURNING that it wrote.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from kitaru._lazy import LazyModule
from kitaru._store._rows import _changed, _execution_from_row, _execution_row
from kitaru._store._statements import dialect_insert
from kitaru._store.records import (
    ArtifactRecord,
    ExecutionRecord,
    ExecutionStatus,
    StaleOwnerError,
    SuspensionStatus,
)
from kitaru.errors import KitaruStateError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from kitaru._store import schema as t
    from kitaru._store import time_schema as ts
    from kitaru._store.records_extra import ScheduleFireRecord, ScheduleRecord, SuspensionRecord
else:  # imported on first use (see _lazy)
    sa = LazyModule("sqlalchemy")
    t = LazyModule("kitaru._store.schema")
    ts = LazyModule("kitaru._store.time_schema")

_RUNNING = ExecutionStatus.RUNNING.value
_WAITING = ExecutionStatus.WAITING.value
_FINISHED = [
    ExecutionStatus.COMPLETED.value,
    ExecutionStatus.FAILED.value,
    ExecutionStatus.CANCELLED.value,
]


class _StoreCore(Protocol):
    _is_sqlite: bool

    @property
    def _owner_query(self) -> Any: ...

    def write(self) -> contextlib.AbstractContextManager[sa.Connection]: ...

    def read(self) -> contextlib.AbstractContextManager[sa.Connection]: ...

    def _stale(self, exec_id: str, fence: int | None) -> StaleOwnerError: ...


def _suspension_from_row(row: Mapping[Any, Any]) -> SuspensionRecord:
    values = {col.name: row[col.name] for col in ts.suspensions.columns}
    values["status"] = SuspensionStatus(values["status"])
    from kitaru._store.records_extra import SuspensionRecord

    return SuspensionRecord(**values)


def _suspension_row(record: SuspensionRecord) -> dict[str, Any]:
    row = {col.name: getattr(record, col.name) for col in ts.suspensions.columns}
    row["status"] = record.status.value
    return row


def _schedule_from_row(row: Mapping[Any, Any]) -> ScheduleRecord:
    values = {col.name: row[col.name] for col in ts.schedules.columns}
    values["paused"] = bool(values["paused"])
    from kitaru._store.records_extra import ScheduleRecord

    return ScheduleRecord(**values)


def due_suspension(now: float) -> sa.ColumnElement[bool]:
    """A waiting execution with a pending sleep that is over, or a child that ended."""
    s, ex = ts.suspensions.c, t.executions.c
    child = t.executions.alias("kitaru_child")
    child_ended = (
        sa.select(sa.literal(1))
        .where(child.c.id == s.child_exec_id, child.c.status.in_(_FINISHED))
        .exists()
    )
    return (
        sa.select(sa.literal(1))
        .where(
            s.exec_id == ex.id,
            s.status == SuspensionStatus.PENDING.value,
            sa.or_(
                sa.and_(s.kind == "sleep", s.wake_at <= now),
                sa.and_(s.kind == "child", child_ended),
            ),
        )
        .exists()
    )


def pending_suspension() -> sa.ColumnElement[bool]:
    s, ex = ts.suspensions.c, t.executions.c
    return (
        sa.select(sa.literal(1))
        .where(s.exec_id == ex.id, s.status == SuspensionStatus.PENDING.value)
        .exists()
    )


class TimeMixin:
    # -- sleeps and child joins -------------------------------------------------------

    def open_suspension(
        self: _StoreCore, record: SuspensionRecord, *, fence: int
    ) -> SuspensionRecord:
        """Record a sleep or child join the first time the body reaches it; return the
        stored one (its ``wake_at`` is the first run's, never moved), under the fence."""
        s = ts.suspensions
        insert = dialect_insert(self._is_sqlite)(s)
        with self.write() as conn:
            row = conn.execute(self._owner_query, {"exec_id": record.exec_id}).first()
            if row is None or row[0] != fence or row[1] != _RUNNING:
                raise self._stale(record.exec_id, fence)
            conn.execute(
                insert.on_conflict_do_nothing(index_elements=["exec_id", "suspension_id"]),
                _suspension_row(record),
            )
            stored = conn.execute(
                sa.select(s).where(
                    s.c.exec_id == record.exec_id, s.c.suspension_id == record.suspension_id
                )
            ).first()
        assert stored is not None
        return _suspension_from_row(stored._mapping)

    def end_suspension(self: _StoreCore, exec_id: str, suspension_id: str, *, fence: int) -> None:
        """The body went past it: done (fenced; a no-op if it was done already)."""
        s, ex = ts.suspensions.c, t.executions.c
        owned = (
            sa.select(sa.literal(1))
            .where(ex.id == exec_id, ex.fence == fence, ex.status == _RUNNING)
            .exists()
        )
        with self.write() as conn:
            if conn.execute(sa.select(owned)).scalar():
                conn.execute(
                    ts.suspensions.update()
                    .where(
                        s.exec_id == exec_id,
                        s.suspension_id == suspension_id,
                        s.status == SuspensionStatus.PENDING.value,
                    )
                    .values(status=SuspensionStatus.DONE.value, ended_at=time.time())
                )
                return
        raise self._stale(exec_id, fence)

    def release_suspended(self: _StoreCore, exec_id: str, *, fence: int) -> bool:
        """Let go of a running execution at a sleep or child join: ``waiting``, no lease.

        Conditional in one statement (running under ``fence``); False when it was
        cancelled or taken over meanwhile. A worker resumes it once it is due.
        """
        ex = t.executions.c
        with self.write() as conn:
            return _changed(
                conn,
                t.executions.update()
                .where(ex.id == exec_id, ex.fence == fence, ex.status == _RUNNING)
                .values(status=_WAITING, lease_owner=None, lease_expires_at=None),
            )

    def suspensions_of(
        self: _StoreCore, exec_ids: Sequence[str]
    ) -> dict[str, list[SuspensionRecord]]:
        s = ts.suspensions
        with self.read() as conn:
            rows = conn.execute(
                sa.select(s)
                .where(s.c.exec_id.in_(list(exec_ids)))
                .order_by(s.c.exec_id, s.c.created_at)
            ).all()
        grouped: dict[str, list[SuspensionRecord]] = {}
        for row in rows:
            record = _suspension_from_row(row._mapping)
            grouped.setdefault(record.exec_id, []).append(record)
        return grouped

    def suspensions(self: _StoreCore, exec_id: str) -> list[SuspensionRecord]:
        return TimeMixin.suspensions_of(self, [exec_id]).get(exec_id, [])

    def next_wake_at(self: _StoreCore) -> float | None:
        """The earliest wake-up of a pending sleep of a waiting execution (a worker's alarm)."""
        s, ex = ts.suspensions.c, t.executions.c
        query = (
            sa.select(sa.func.min(s.wake_at))
            .select_from(ts.suspensions.join(t.executions, ex.id == s.exec_id))
            .where(
                s.kind == "sleep",
                s.status == SuspensionStatus.PENDING.value,
                ex.status == _WAITING,
                ex.lease_owner.is_(None),
            )
        )
        with self.read() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else float(value)

    # -- idempotent starts and children ---------------------------------------------

    def create_execution_once(
        self: _StoreCore, execution: ExecutionRecord, inputs: ArtifactRecord | None = None
    ) -> tuple[ExecutionRecord, bool]:
        """Insert ``execution`` unless one with its id exists; returns (stored, created).

        The insert and its inputs commit together, so of several processes racing
        with the same id exactly one creates it and the others get it back.
        """
        from kitaru._store._rows import _artifact_row

        ex = t.executions
        insert = dialect_insert(self._is_sqlite)
        with self.write() as conn:
            created = (
                conn.execute(
                    insert(ex).on_conflict_do_nothing(index_elements=["id"]).returning(ex.c.id),
                    _execution_row(execution),
                ).first()
                is not None
            )
            if created and inputs is not None:
                conn.execute(
                    insert(t.artifacts).on_conflict_do_nothing(index_elements=["id"]),
                    _artifact_row(inputs),
                )
            row = conn.execute(sa.select(ex).where(ex.c.id == execution.id)).first()
        assert row is not None
        return _execution_from_row(row._mapping), created

    def children(self: _StoreCore, exec_id: str) -> list[ExecutionRecord]:
        """Child executions started by ``exec_id``'s body, oldest first."""
        ex = t.executions.c
        with self.read() as conn:
            rows = conn.execute(
                sa.select(t.executions)
                .where(ex.parent_exec_id == exec_id)
                .order_by(ex.created_at, ex.id)
            ).all()
        return [_execution_from_row(row._mapping) for row in rows]

    # -- schedules ------------------------------------------------------------------

    def create_schedule(self: _StoreCore, schedule: ScheduleRecord) -> bool:
        """False (nothing written) when a schedule of that name exists."""
        insert = dialect_insert(self._is_sqlite)(ts.schedules)
        row = {col.name: getattr(schedule, col.name) for col in ts.schedules.columns}
        with self.write() as conn:
            return (
                conn.execute(
                    insert.on_conflict_do_nothing(index_elements=["name"]).returning(
                        ts.schedules.c.name
                    ),
                    row,
                ).first()
                is not None
            )

    def get_schedule(self: _StoreCore, name: str) -> ScheduleRecord | None:
        s = ts.schedules
        with self.read() as conn:
            row = conn.execute(sa.select(s).where(s.c.name == name)).first()
        return None if row is None else _schedule_from_row(row._mapping)

    def list_schedules(self: _StoreCore) -> list[ScheduleRecord]:
        s = ts.schedules
        with self.read() as conn:
            rows = conn.execute(sa.select(s).order_by(s.c.name)).all()
        return [_schedule_from_row(row._mapping) for row in rows]

    def set_schedule_paused(
        self: _StoreCore, name: str, paused: bool, *, cursor: float | None = None
    ) -> bool:
        """Pause or resume; resuming may move the cursor (slots while paused never run)."""
        s = ts.schedules
        with self.write() as conn:
            changed = _changed(conn, s.update().where(s.c.name == name).values(paused=paused))
            if changed and cursor is not None:
                conn.execute(
                    s.update().where(s.c.name == name, s.c.cursor < cursor).values(cursor=cursor)
                )
        return changed

    def delete_schedule(self: _StoreCore, name: str) -> bool:
        s, f = ts.schedules, ts.schedule_fires
        with self.write() as conn:
            conn.execute(f.delete().where(f.c.schedule_name == name))
            deleted = conn.execute(s.delete().where(s.c.name == name).returning(s.c.name))
            return deleted.first() is not None

    def claim_slot(self: _StoreCore, fire: ScheduleFireRecord) -> bool:
        """Claim one slot of a schedule: True for exactly one of any number of claimers."""
        f = ts.schedule_fires
        insert = dialect_insert(self._is_sqlite)(f)
        row = {col.name: getattr(fire, col.name) for col in f.columns}
        with self.write() as conn:
            return (
                conn.execute(
                    insert.on_conflict_do_nothing(
                        index_elements=["schedule_name", "slot"]
                    ).returning(f.c.slot),
                    row,
                ).first()
                is not None
            )

    def advance_schedule(self: _StoreCore, name: str, cursor: float) -> None:
        """Slots up to ``cursor`` are handled (it only moves forward)."""
        s = ts.schedules.c
        with self.write() as conn:
            conn.execute(
                ts.schedules.update().where(s.name == name, s.cursor < cursor).values(cursor=cursor)
            )

    def mark_slot_started(self: _StoreCore, name: str, slot: float) -> None:
        """The slot's execution exists: the claim is done with."""
        f = ts.schedule_fires.c
        with self.write() as conn:
            conn.execute(
                ts.schedule_fires.update()
                .where(f.schedule_name == name, f.slot == slot, f.started_at.is_(None))
                .values(started_at=time.time())
            )

    def stranded_slots(
        self: _StoreCore, claimed_before: float, limit: int = 100
    ) -> list[ScheduleFireRecord]:
        """Slots claimed before ``claimed_before`` whose execution was never started."""
        f = ts.schedule_fires
        with self.read() as conn:
            rows = conn.execute(
                sa.select(f)
                .where(f.c.started_at.is_(None), f.c.claimed_at < claimed_before)
                .order_by(f.c.claimed_at)
                .limit(limit)
            ).all()
        from kitaru._store.records_extra import ScheduleFireRecord

        return [
            ScheduleFireRecord(**{col.name: row._mapping[col.name] for col in f.columns})
            for row in rows
        ]

    def schedule_fires(self: _StoreCore, name: str) -> list[ScheduleFireRecord]:
        f = ts.schedule_fires
        with self.read() as conn:
            rows = conn.execute(
                sa.select(f).where(f.c.schedule_name == name).order_by(f.c.slot)
            ).all()
        from kitaru._store.records_extra import ScheduleFireRecord

        return [
            ScheduleFireRecord(**{col.name: row._mapping[col.name] for col in f.columns})
            for row in rows
        ]


def require_schedule(store: Any, name: str) -> ScheduleRecord:
    found: ScheduleRecord | None = store.get_schedule(name)
    if found is None:
        raise KitaruStateError(
            f"No schedule named {name!r}. List schedules with `kitaru schedule list`."
        )
    return found
