"""``executions.statistics()`` and ``.cohort()`` of a client connected to a server.

Arguments are checked here first (the same ``KitaruUsageError`` as on the store),
then sent as their parsed fields, so the server computes exactly what a local
call would; the answers are rebuilt into the same result types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from kitaru.analysis._statistics import (
    ExecutionStatistics,
    ExecutionStatisticsGroup,
    parse_groupings,
    parse_metrics,
)

if TYPE_CHECKING:
    from kitaru.analysis._cohort import CohortQuery, CohortResult
    from kitaru.client._remote import Session


def _fields(item: Any) -> dict[str, Any]:
    return {
        key: value.value if isinstance(value, Enum) else value
        for key, value in dataclasses.asdict(item).items()
    }


def statistics(
    session: Session,
    *,
    group_by: Sequence[Any],
    metrics: Sequence[Any],
    flow: str | None,
    status: list[str] | None,
    stack: str | None,
    tags: Sequence[str] | None,
    max_groups: int,
) -> ExecutionStatistics:
    if isinstance(tags, str):
        tags = [tags]
    body = {
        "group_by": [_fields(g) for g in parse_groupings(group_by)],
        "metrics": [_fields(m) for m in parse_metrics(metrics)],
        "flow": flow,
        "status": status,
        "stack": stack,
        "tags": None if tags is None else [str(tag) for tag in tags],
        "max_groups": max_groups,
    }
    data = session.post("/analysis/statistics", body)
    return ExecutionStatistics(
        groups=[
            ExecutionStatisticsGroup(
                keys=group["keys"],
                execution_count=group["execution_count"],
                metrics=group["metrics"],
            )
            for group in data["groups"]
        ],
        truncated=data["truncated"],
        group_count=data.get("group_count", len(data["groups"])),
    )


def resolve_cohort(session: Session, query: CohortQuery, max_scan: int) -> CohortResult:
    from kitaru.analysis._cohort import CohortResult, _timestamp

    statuses = query._statuses()
    since, until = _timestamp("since", query.since), _timestamp("until", query.until)
    data = session.get(
        "/analysis/cohort",
        flow=query.flow,
        at=query.at,
        order_by=query.order_by,
        limit=query.limit,
        originals_only=query.originals_only,
        status=statuses,
        any_status=statuses is None,
        since=None if since is None else since.isoformat(),
        until=None if until is None else until.isoformat(),
        max_scan=max_scan,
    )
    return CohortResult(**{f.name: data[f.name] for f in dataclasses.fields(CohortResult)})
