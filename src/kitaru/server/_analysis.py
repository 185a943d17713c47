"""``/api/v1/analysis``: execution statistics and replay cohorts (``kitaru.analysis``).

The same computations as ``KitaruClient().executions.statistics()`` / ``.cohort()``
on the store, with the same argument strings, so a connected client answers alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from kitaru.client import KitaruClient
from kitaru.server._auth import Reader
from kitaru.server._schemas import ErrorResponse

router = APIRouter(
    prefix="/analysis",
    tags=["analysis"],
    responses={code: {"model": ErrorResponse} for code in (400, 401, 403, 422, 501, 503)},
)


class StatisticsQuery(BaseModel):
    """``executions.statistics()``'s arguments; entries are tokens or their fields.

    A key it does not know is refused (as by the other bodies): a misspelt ``group_by``
    would otherwise give an answer for arguments nobody meant.
    """

    model_config = ConfigDict(extra="forbid")

    group_by: list[str | dict[str, Any]] = Field(
        default_factory=list,
        description="status|flow|stack|tag|time:<granularity>|metadata:<key>, or the fields "
        "{dimension, name, time_granularity, metadata_key}",
    )
    metrics: list[str | dict[str, Any]] = Field(
        default_factory=list,
        description="<name>:<source>:<agg>, <name>:metadata:<key>:<agg>, or the fields "
        "{name, source, aggregation, metadata_key}",
    )
    flow: str | None = None
    status: list[str] | None = None
    stack: str | None = None
    tags: list[str] | None = None
    max_groups: int = Field(default=1000, ge=1, le=10_000)


@router.post("/statistics", summary="Executions grouped, with aggregated metrics")
def statistics(body: StatisticsQuery, _key: Reader) -> dict[str, Any]:
    result = KitaruClient().executions.statistics(
        group_by=body.group_by,
        metrics=body.metrics,
        flow=body.flow,
        status=body.status or None,
        stack=body.stack,
        tags=body.tags,
        max_groups=body.max_groups,
    )
    return result.to_dict()


@router.get("/cohort", summary="Executions of a flow that can be replayed from a checkpoint")
def cohort(
    _key: Reader,
    flow: Annotated[str, Query(min_length=1)],
    at: Annotated[str, Query(min_length=1)],
    order_by: str = "-started_at",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
    originals_only: bool = True,
    status: Annotated[list[str] | None, Query()] = None,
    any_status: Annotated[bool, Query(description="Ignore status (status=None)")] = False,
    since: datetime | None = None,
    until: datetime | None = None,
    max_scan: Annotated[int, Query(ge=1, le=100_000)] = 500,
) -> dict[str, Any]:
    query = KitaruClient().executions.cohort(
        flow=flow,
        at=at,
        order_by=order_by,
        limit=limit,
        originals_only=originals_only,
        status=None if any_status else (status or "completed"),
        since=since,
        until=until,
    )
    return query.resolve(max_scan=max_scan).to_json()
