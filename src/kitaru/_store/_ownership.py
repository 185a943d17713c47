"""Who runs an execution: starting a run, claiming it, leases, and finding orphans.

A mixin of :class:`~kitaru._store.store.Store`. A runner holds an execution through a
lease it renews; ``fence`` grows on every takeover, so a stale runner's writes are
refused (see ``Store._check_owner``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from kitaru._lazy import LazyModule
from kitaru._store._rows import _changed, _execution_from_row
from kitaru._store._time import due_suspension, pending_suspension
from kitaru._store.records import ExecutionRecord, ExecutionStatus, WaitStatus
from kitaru.errors import KitaruStateError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from kitaru._store import schema as t
    from kitaru._store._sqlite_direct import SQLiteDirect
else:  # imported on first use (see _lazy)
    sa = LazyModule("sqlalchemy")
    t = LazyModule("kitaru._store.schema")


class _StoreCore(Protocol):
    """What the ownership methods use of the store."""

    _sqlite: SQLiteDirect | None

    def write(self) -> contextlib.AbstractContextManager[sa.Connection]: ...

    def read(self) -> contextlib.AbstractContextManager[sa.Connection]: ...


class OwnershipMixin:
    def start_run(
        self: _StoreCore,
        exec_id: str,
        *,
        owner: str,
        lease_seconds: float,
        fence: int | None = None,
        now: float | None = None,
    ) -> ExecutionRecord | None:
        """Mark the execution running under ``owner`` and count one more run of the body.

        With ``fence`` (a runner starting its next flow-level retry) this only
        happens while the execution is still running under that fence: None
        means it was cancelled or taken over meanwhile.
        """
        now = time.time() if now is None else now
        ex = t.executions.c
        update = t.executions.update().where(ex.id == exec_id)
        if fence is not None:
            update = update.where(ex.fence == fence, ex.status == ExecutionStatus.RUNNING.value)
        with self.write() as conn:
            changed = _changed(
                conn,
                update.values(
                    status=ExecutionStatus.RUNNING.value,
                    started_at=sa.func.coalesce(ex.started_at, now),
                    ended_at=None,
                    run_count=ex.run_count + 1,
                    lease_owner=owner,
                    lease_expires_at=now + lease_seconds,
                ),
            )
            row = conn.execute(sa.select(t.executions).where(ex.id == exec_id)).first()
        if row is None:
            raise KitaruStateError(f"Execution {exec_id!r} disappeared from the store.")
        return _execution_from_row(row._mapping) if changed else None

    def note_flow_retry(self: _StoreCore, exec_id: str, *, used: int, fence: int) -> bool:
        """Record that the flow body is about to be retried: ``used`` retries of its budget.

        Written before the backoff, so a runner that dies during it leaves the count
        for whoever resumes the execution. False (nothing written): it was cancelled
        or taken over meanwhile.
        """
        ex = t.executions.c
        update = (
            t.executions.update()
            .where(
                ex.id == exec_id,
                ex.fence == fence,
                ex.status == ExecutionStatus.RUNNING.value,
            )
            .values(flow_retries=used)
        )
        with self.write() as conn:
            return _changed(conn, update)

    def claim(
        self: _StoreCore,
        exec_id: str,
        *,
        owner: str,
        lease_seconds: float,
        from_status: Iterable[ExecutionStatus],
        expected_fence: int,
        require_expired_lease: bool,
        now: float | None = None,
        count_run: bool = True,
    ) -> ExecutionRecord | None:
        """Take ownership of an execution to run its body again.

        A fenced, conditional update: it only succeeds if nobody else claimed
        the execution since it was read (same ``fence``), it is in one of
        ``from_status`` and, when asked, its previous owner's lease expired.
        Exactly one of several concurrent claimers gets the record back.
        ``count_run=False``: the claimer hands it on rather than running it (the
        server's hand-over to a worker); the worker's claim counts the run.
        """
        now = time.time() if now is None else now
        ex = t.executions.c
        update = t.executions.update().where(
            ex.id == exec_id,
            ex.fence == expected_fence,
            ex.status.in_([s.value for s in from_status]),
        )
        if require_expired_lease:
            update = update.where(sa.or_(ex.lease_expires_at.is_(None), ex.lease_expires_at < now))
        update = update.values(
            status=ExecutionStatus.RUNNING.value,
            started_at=sa.func.coalesce(ex.started_at, now),
            ended_at=None,
            failure=None,
            result_artifact_id=None,
            run_count=ex.run_count + (1 if count_run else 0),
            lease_owner=owner,
            lease_expires_at=now + lease_seconds,
            fence=ex.fence + 1,
        )
        with self.write() as conn:
            if not _changed(conn, update):
                return None
            row = conn.execute(sa.select(t.executions).where(ex.id == exec_id)).first()
        return None if row is None else _execution_from_row(row._mapping)

    def renew_leases(
        self: _StoreCore, owner: str, fences: Mapping[str, int], *, lease_seconds: float
    ) -> dict[str, ExecutionStatus | None]:
        """Extend ``owner``'s leases; report each execution's status.

        An execution missing from the answer's ``RUNNING``/``WAITING`` entries
        was cancelled, deleted or taken over (its fence moved on): its runner
        must stop.
        """
        if not fences:
            return {}
        now = time.time()
        statuses: dict[str, ExecutionStatus | None] = dict.fromkeys(fences)
        rows: Sequence[tuple[str, str, int]]
        if self._sqlite is not None:
            rows = self._sqlite.renew_leases(owner, fences, now + lease_seconds)
        else:
            ex = t.executions.c
            with self.write() as conn:
                conn.execute(
                    t.executions.update()
                    .where(ex.id.in_(list(fences)), ex.lease_owner == owner)
                    .values(lease_expires_at=now + lease_seconds)
                )
                rows = conn.execute(
                    sa.select(ex.id, ex.status, ex.fence).where(ex.id.in_(list(fences)))
                ).all()
        for exec_id, status, fence in rows:
            statuses[exec_id] = (
                ExecutionStatus(status) if fence == fences[exec_id] else ExecutionStatus.CANCELLED
            )
        return statuses

    def orphaned(
        self: _StoreCore,
        *,
        now: float | None = None,
        limit: int | None = 100,
        after: tuple[float, str] | None = None,
    ) -> list[ExecutionRecord]:
        """Executions that need a runner and have none, oldest first.

        Running ones whose runner stopped renewing its lease, and waiting ones
        with no live runner whose waits have all been resolved (the process that
        gave the input died before resuming them). ``after`` is the
        ``(created_at, id)`` of the last one of the previous page.
        """
        now = time.time() if now is None else now
        ex, w = t.executions.c, t.waits.c
        no_runner = sa.or_(ex.lease_expires_at.is_(None), ex.lease_expires_at < now)
        still_pending = (
            sa.select(sa.literal(1))
            .where(w.exec_id == ex.id, w.status == WaitStatus.PENDING.value)
            .exists()
        )
        resolved = (
            sa.select(sa.literal(1))
            .where(
                w.exec_id == ex.id,
                w.status.in_([WaitStatus.ANSWERED.value, WaitStatus.ABORTED.value]),
            )
            .exists()
        )
        query = (
            sa.select(t.executions)
            .where(
                no_runner,
                sa.or_(
                    ex.status == ExecutionStatus.RUNNING.value,
                    sa.and_(
                        ex.status == ExecutionStatus.WAITING.value,
                        resolved,
                        ~still_pending,
                        ~pending_suspension(),
                    ),
                    # A released sleep that is over, or a parent whose child ended.
                    sa.and_(ex.status == ExecutionStatus.WAITING.value, due_suspension(now)),
                ),
            )
            .order_by(ex.created_at, ex.id)
            .limit(limit)
        )
        if after is not None:
            created_at, exec_id = after
            query = query.where(
                sa.or_(
                    ex.created_at > created_at,
                    sa.and_(ex.created_at == created_at, ex.id > exec_id),
                )
            )
        with self.read() as conn:
            rows = conn.execute(query).all()
        return [_execution_from_row(row._mapping) for row in rows]

    def leased_running(
        self: _StoreCore, *, owner_like: str, now: float | None = None
    ) -> list[ExecutionRecord]:
        """Running executions whose lease is still valid and whose owner matches ``owner_like``.

        ``owner_like`` is a SQL LIKE pattern (a worker asks for its own machine's
        runners, to take over those whose process died without waiting out the lease).
        """
        now = time.time() if now is None else now
        ex = t.executions.c
        query = (
            sa.select(t.executions)
            .where(
                ex.status == ExecutionStatus.RUNNING.value,
                ex.lease_expires_at >= now,
                ex.lease_owner.like(owner_like),
            )
            .order_by(ex.created_at, ex.id)
        )
        with self.read() as conn:
            rows = conn.execute(query).all()
        return [_execution_from_row(row._mapping) for row in rows]
