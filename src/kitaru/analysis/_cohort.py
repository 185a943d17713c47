"""``kitaru.cohort``: pick the executions of a flow to replay from one checkpoint.

A cohort is the executions of ``flow`` that recorded a call matching ``at`` (by
call id or checkpoint name, as replay's ``at`` does), filtered by status, time
and "originals only", ordered and cut to ``limit``. ``resolve`` scans at most
``max_scan`` of the newest executions of the flow, with two queries: one over
the executions, one over their calls that match ``at``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, overload

import sqlalchemy as sa

from kitaru._store import schema as t
from kitaru._text import storable_text
from kitaru.errors import KitaruFeatureNotAvailableError, KitaruUsageError

if TYPE_CHECKING:
    from kitaru.client import KitaruClient

ORDER_FIELDS = ("started_at", "duration", "display_cost_usd", "total_tokens")


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KitaruUsageError(f"{name} must be an integer of 1 or more, got {value!r}.")
    return value


def _timestamp(name: str, value: Any) -> datetime | None:
    """``since``/``until``: a datetime (naive = UTC) or an ISO 8601 string."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise KitaruUsageError(
                f"{name} must be a datetime or an ISO 8601 time such as "
                f"'2026-01-31T12:00:00+00:00', got {value!r}."
            ) from None
    if not isinstance(value, datetime):
        raise KitaruUsageError(f"{name} must be a datetime or an ISO 8601 string, got {value!r}.")
    moment: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return moment


def _order(order_by: Any) -> tuple[str, bool]:
    text = order_by.strip() if isinstance(order_by, str) else ""
    descending = text.startswith("-")
    name = text[1:] if descending else text
    if name not in ORDER_FIELDS:
        raise KitaruUsageError(
            f"order_by must be one of {', '.join(ORDER_FIELDS)} (prefix '-' for descending), "
            f"got {order_by!r}."
        )
    return name, descending


@dataclass(frozen=True)
class CohortResult(Sequence[str]):
    """The executions a ``CohortQuery`` selected: a sequence of their ids.

    Pass it wherever ids are taken (``executions.replay``, ``diff_cohort``).
    """

    exec_ids: list[str]
    flow: str
    at: str
    deployment: str | None
    deployment_version: str | None
    order_by: str
    #: Executions of the flow read (at most ``max_scan``).
    scanned: int
    #: Of those, how many passed every filter.
    matched: int
    #: True when ``max_scan`` stopped the scan before the flow's oldest execution.
    partial: bool
    #: Scanned executions the filters left out (scanned - matched).
    filtered: int
    #: How many were ranked into ``exec_ids`` (matched, cut to ``limit``).
    ranked: int

    def __iter__(self) -> Iterator[str]:
        return iter(self.exec_ids)

    def __len__(self) -> int:
        return len(self.exec_ids)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self.exec_ids[index]

    def to_json(self) -> dict[str, Any]:
        return {
            "exec_ids": list(self.exec_ids),
            "flow": self.flow,
            "at": self.at,
            "deployment": self.deployment,
            "deployment_version": self.deployment_version,
            "order_by": self.order_by,
            "scanned": self.scanned,
            "matched": self.matched,
            "partial": self.partial,
            "filtered": self.filtered,
            "ranked": self.ranked,
        }


@dataclass(frozen=True)
class CohortQuery:
    """What to select; ``resolve()`` reads the store."""

    flow: str
    at: str
    deployment: str | None = None
    deployment_version: str | None = None
    order_by: str = "-started_at"
    limit: int = 50
    originals_only: bool = True
    status: str | Sequence[str] | None = "completed"
    since: datetime | str | None = None
    until: datetime | str | None = None
    _client: KitaruClient | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("flow", "at"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                what = "a flow name" if name == "flow" else "a checkpoint name or call id"
                raise KitaruUsageError(f"cohort() needs {name}= ({what}), got {value!r}.")
        _order(self.order_by)
        _positive("limit", self.limit)
        self._statuses()
        _timestamp("since", self.since)
        _timestamp("until", self.until)
        if self.deployment is not None or self.deployment_version is not None:
            raise KitaruFeatureNotAvailableError(
                "cohort(deployment=..., deployment_version=...) is not supported: Kitaru "
                "executions are not tied to deployments. Select by flow, status and time instead."
            )

    def _statuses(self) -> list[str] | None:
        from kitaru.client._client import _statuses

        if self.status is None:
            return None
        return _statuses(self.status)

    def resolve(self, *, max_scan: int = 500) -> CohortResult:
        max_scan = _positive("max_scan", max_scan)
        client = self._client
        if client is None:
            from kitaru.client import KitaruClient

            client = KitaruClient()
        if client.connection is not None:  # connected to a server: it reads its store
            from kitaru.client._remote_analysis import resolve_cohort
            from kitaru.client._remote_client import RemoteExecutionsAPI

            executions = client.executions
            assert isinstance(executions, RemoteExecutionsAPI)
            return resolve_cohort(executions._session, self, max_scan)
        store = client._backend.store
        ex = t.executions.c
        scan = (
            sa.select(
                ex.id, ex.status, ex.original_exec_id, ex.started_at, ex.ended_at, ex.created_at
            )
            .where(ex.flow_name == self.flow)
            .order_by(ex.created_at.desc(), ex.id.desc())
            .limit(max_scan + 1)  # one more tells whether the scan was cut short
        )
        rows: list[Any] = []
        with_at: set[str] = set()
        partial = False
        # Undecodable text (from argv) names no stored flow or call: nothing to read.
        if storable_text(self.flow) and storable_text(self.at):
            c = t.checkpoint_calls.c
            with store.read() as conn:
                rows = list(conn.execute(scan).all())
                partial = len(rows) > max_scan
                rows = rows[:max_scan]
                if rows:
                    at_calls = (
                        sa.select(c.exec_id)
                        .where(
                            c.exec_id.in_([row.id for row in rows]),
                            sa.or_(c.call_id == self.at, c.name == self.at),
                        )
                        .distinct()
                    )
                    with_at = {row[0] for row in conn.execute(at_calls).all()}
        statuses = self._statuses()
        since, until = _timestamp("since", self.since), _timestamp("until", self.until)
        matched = []
        for row in rows:
            # Compared as datetimes (microseconds), as the client shows them: a
            # started_at read from an Execution then matches its own execution.
            started = datetime.fromtimestamp(
                row.started_at if row.started_at is not None else row.created_at, tz=UTC
            )
            if (
                row.id in with_at
                and (statuses is None or row.status in statuses)
                and (not self.originals_only or row.original_exec_id is None)
                and (since is None or started >= since)
                and (until is None or started <= until)
            ):
                matched.append(row)
        name, descending = _order(self.order_by)

        def value(row: Any) -> float | None:
            if name == "started_at":
                return float(row.started_at if row.started_at is not None else row.created_at)
            if name == "duration" and row.started_at is not None and row.ended_at is not None:
                return float(row.ended_at - row.started_at)
            return None  # [llm] cost and tokens are not recorded

        # Unknown values last in either direction; ties newest first, then by id.
        known = [row for row in matched if value(row) is not None]
        unknown = [row for row in matched if value(row) is None]
        known.sort(key=lambda row: (value(row), row.created_at, row.id), reverse=descending)
        ranked = (known + unknown)[: self.limit]
        return CohortResult(
            exec_ids=[row.id for row in ranked],
            flow=self.flow,
            at=self.at,
            deployment=self.deployment,
            deployment_version=self.deployment_version,
            order_by=self.order_by,
            scanned=len(rows),
            matched=len(matched),
            partial=partial,
            filtered=len(rows) - len(matched),
            ranked=len(ranked),
        )


def cohort(
    *,
    flow: str,
    at: str,
    deployment: str | None = None,
    deployment_version: str | None = None,
    order_by: str = "-started_at",
    limit: int = 50,
    originals_only: bool = True,
    status: str | Sequence[str] | None = "completed",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    client: KitaruClient | None = None,
) -> CohortQuery:
    """A query for the executions of ``flow`` that can be replayed from ``at``.

    Arguments are checked here (``KitaruUsageError``); ``.resolve(max_scan=500)``
    reads the store and returns a ``CohortResult`` (usable as replay's ids).
    """
    return CohortQuery(
        flow=flow,
        at=at,
        deployment=deployment,
        deployment_version=deployment_version,
        order_by=order_by,
        limit=limit,
        originals_only=originals_only,
        status=status,
        since=since,
        until=until,
        _client=client,
    )
