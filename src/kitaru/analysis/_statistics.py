"""``client.executions.statistics``: executions grouped and aggregated (Kitaru 0.21).

Grouping tokens: ``status``, ``flow``, ``stack``, ``tag``, ``time:<hour|day|week|month>``
(at most one), ``metadata:<key>``. Metric tokens: ``<name>:<source>:<agg>`` with
source ``duration|step_count|cached_step_count|output_artifact_count``, or
``<name>:metadata:<key>:<agg>``; ``agg`` is ``avg|sum|min|max``.

The whole computation is a few queries, whatever the number of executions: one
over the executions (filters in SQL except tags, which live in JSON metadata),
and one aggregate over checkpoint calls / saved artifacts only when a metric
needs it. Groups are then formed in Python from those small rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kitaru._store import schema as t
from kitaru._text import storable_text
from kitaru.errors import KitaruUsageError

if TYPE_CHECKING:
    from kitaru._store.store import Store

MAX_GROUPS_LIMIT = 10_000
_SAVE_CALL_TYPE = "kitaru.save"  # kitaru._runtime.execution.SAVE_CALL_TYPE (not imported: cheap)


class ExecutionStatisticsDimension(StrEnum):
    STATUS = "status"
    FLOW = "flow"
    STACK = "stack"
    TAG = "tag"
    TIME = "time"
    METADATA = "metadata"


class ExecutionStatisticsTimeGranularity(StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class ExecutionStatisticsMetricSource(StrEnum):
    DURATION = "duration"
    STEP_COUNT = "step_count"
    CACHED_STEP_COUNT = "cached_step_count"
    OUTPUT_ARTIFACT_COUNT = "output_artifact_count"
    METADATA = "metadata"
    # [llm] totals of the LLM usage an execution incurred (cached and replay-reused
    # calls excluded); None for an execution without LLM usage.
    LLM_DISPLAY_COST = "llm_display_cost"
    LLM_TOTAL_TOKENS = "llm_total_tokens"
    LLM_ESTIMATED_COST = "llm_estimated_cost"
    LLM_PROMPT_TOKENS = "llm_prompt_tokens"
    LLM_COMPLETION_TOKENS = "llm_completion_tokens"
    LLM_CALL_COUNT = "llm_call_count"


class ExecutionStatisticsMetricAggregation(StrEnum):
    AVG = "avg"
    SUM = "sum"
    MIN = "min"
    MAX = "max"


_DIMENSION_KEY = {
    ExecutionStatisticsDimension.STATUS: "status",
    ExecutionStatisticsDimension.FLOW: "flow_id",
    ExecutionStatisticsDimension.STACK: "stack_id",
    ExecutionStatisticsDimension.TAG: "tag",
}
_GROUP_HELP = "status, flow, stack, tag, time:<hour|day|week|month> or metadata:<key>"
_METRIC_HELP = (
    "<name>:<duration|step_count|cached_step_count|output_artifact_count>:<avg|sum|min|max> "
    "or <name>:metadata:<key>:<avg|sum|min|max>"
)


def _enum_value(enum: type[StrEnum], value: Any, what: str) -> Any:
    try:
        return enum(str(value).strip().lower())
    except ValueError:
        known = ", ".join(member.value for member in enum)
        raise KitaruUsageError(f"Unknown {what} {value!r}; use one of: {known}.") from None


@dataclass(frozen=True)
class ExecutionStatisticsGrouping:
    """One ``group_by`` dimension; ``name`` is its key in each group's ``keys``."""

    dimension: ExecutionStatisticsDimension
    name: str = ""
    time_granularity: ExecutionStatisticsTimeGranularity | None = None
    metadata_key: str | None = None

    def __post_init__(self) -> None:
        dimension = _enum_value(ExecutionStatisticsDimension, self.dimension, "group_by dimension")
        object.__setattr__(self, "dimension", dimension)
        if dimension is ExecutionStatisticsDimension.TIME:
            if self.time_granularity is None:
                raise KitaruUsageError(
                    "A time grouping needs a granularity: time:hour, time:day, time:week "
                    "or time:month."
                )
            granularity = _enum_value(
                ExecutionStatisticsTimeGranularity, self.time_granularity, "time granularity"
            )
            object.__setattr__(self, "time_granularity", granularity)
            default_name = granularity.value
        elif dimension is ExecutionStatisticsDimension.METADATA:
            if not self.metadata_key or not str(self.metadata_key).strip():
                raise KitaruUsageError(
                    "A metadata grouping needs a key, e.g. group_by=['metadata:team']."
                )
            default_name = str(self.metadata_key)
        else:
            default_name = _DIMENSION_KEY[dimension]
        if not self.name:
            object.__setattr__(self, "name", default_name)

    @classmethod
    def parse(
        cls, token: ExecutionStatisticsGrouping | Mapping[str, Any] | str
    ) -> ExecutionStatisticsGrouping:
        """A grouping from its token (``status``, ``time:day``, ``metadata:team``, …) or
        its fields as a mapping (what the server receives)."""
        if isinstance(token, ExecutionStatisticsGrouping):
            return token
        if isinstance(token, Mapping):
            fields = {"dimension", "name", "time_granularity", "metadata_key"}
            if set(token) - fields or "dimension" not in token:
                raise KitaruUsageError(
                    f"Bad group_by entry {dict(token)!r}: a mapping takes dimension, name, "
                    "time_granularity and metadata_key."
                )
            return cls(**token)
        if not isinstance(token, str) or not token.strip():
            raise KitaruUsageError(f"Bad group_by entry {token!r}; use {_GROUP_HELP}.")
        head, sep, rest = token.strip().partition(":")
        head = head.lower()
        if head == "time" and sep:
            return cls(ExecutionStatisticsDimension.TIME, time_granularity=rest)  # type: ignore[arg-type]
        if head == "metadata" and sep and rest.strip():
            return cls(ExecutionStatisticsDimension.METADATA, metadata_key=rest)
        if not sep and head in ("status", "flow", "stack", "tag"):
            return cls(ExecutionStatisticsDimension(head))
        raise KitaruUsageError(f"Bad group_by entry {token!r}; use {_GROUP_HELP}.")


@dataclass(frozen=True)
class ExecutionStatisticsMetric:
    """One aggregated value per group, reported as ``metrics[name]``."""

    name: str
    source: ExecutionStatisticsMetricSource
    aggregation: ExecutionStatisticsMetricAggregation = ExecutionStatisticsMetricAggregation.AVG
    metadata_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise KitaruUsageError(f"A metric needs a name, got {self.name!r}; use {_METRIC_HELP}.")
        source = _enum_value(ExecutionStatisticsMetricSource, self.source, "metric source")
        object.__setattr__(self, "source", source)
        aggregation = _enum_value(
            ExecutionStatisticsMetricAggregation, self.aggregation, "metric aggregation"
        )
        object.__setattr__(self, "aggregation", aggregation)
        if source is ExecutionStatisticsMetricSource.METADATA and not (
            self.metadata_key and str(self.metadata_key).strip()
        ):
            raise KitaruUsageError(
                f"Metric {self.name!r} reads metadata and needs a key, "
                "e.g. 'score:metadata:score:avg'."
            )

    @classmethod
    def parse(
        cls, token: ExecutionStatisticsMetric | Mapping[str, Any] | str
    ) -> ExecutionStatisticsMetric:
        if isinstance(token, ExecutionStatisticsMetric):
            return token
        if isinstance(token, Mapping):
            unknown = set(token) - {"name", "source", "aggregation", "metadata_key"}
            if unknown or "name" not in token or "source" not in token:
                raise KitaruUsageError(
                    f"Bad metric {dict(token)!r}: a mapping takes name, source, aggregation "
                    "and metadata_key."
                )
            return cls(**token)
        if not isinstance(token, str) or not token.strip():
            raise KitaruUsageError(f"Bad metric {token!r}; use {_METRIC_HELP}.")
        parts = token.strip().split(":")
        if len(parts) == 1 and parts[0] in _LLM_SOURCES:  # [llm] shortcut: the source is the name
            return cls(parts[0], ExecutionStatisticsMetricSource(parts[0]), "sum")  # type: ignore[arg-type]
        if len(parts) >= 4 and parts[1].lower() == "metadata":
            key = ":".join(parts[2:-1])
            if key.strip():
                return cls(parts[0], ExecutionStatisticsMetricSource.METADATA, parts[-1], key)  # type: ignore[arg-type]
        if len(parts) == 3 and parts[1].lower() != "metadata":
            return cls(parts[0], parts[1], parts[2])  # type: ignore[arg-type]
        raise KitaruUsageError(f"Bad metric {token!r}; use {_METRIC_HELP}.")


@dataclass(frozen=True)
class ExecutionStatisticsGroup:
    keys: dict[str, Any]
    execution_count: int
    metrics: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": dict(self.keys),
            "execution_count": self.execution_count,
            "metrics": dict(self.metrics),
        }


@dataclass(frozen=True)
class ExecutionStatistics:
    """Groups sorted by execution count (descending); ``truncated`` if over ``max_groups``."""

    groups: list[ExecutionStatisticsGroup]
    truncated: bool
    # -- ours --
    #: How many groups there were before ``max_groups`` cut the list.
    group_count: int = field(default=0, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [group.to_dict() for group in self.groups],
            "truncated": self.truncated,
            "group_count": self.group_count,
        }


# --- computing ------------------------------------------------------------------------------


def _check_max_groups(max_groups: Any) -> int:
    if (
        isinstance(max_groups, bool)
        or not isinstance(max_groups, int)
        or not 1 <= max_groups <= MAX_GROUPS_LIMIT
    ):
        raise KitaruUsageError(
            f"max_groups must be an integer from 1 to {MAX_GROUPS_LIMIT}, got {max_groups!r}."
        )
    return max_groups


def parse_groupings(group_by: Iterable[Any]) -> list[ExecutionStatisticsGrouping]:
    if isinstance(group_by, str | ExecutionStatisticsGrouping):
        group_by = [group_by]
    groupings = [ExecutionStatisticsGrouping.parse(token) for token in group_by]
    if sum(g.dimension is ExecutionStatisticsDimension.TIME for g in groupings) > 1:
        raise KitaruUsageError("group_by takes at most one time:<granularity> grouping.")
    names = [g.name for g in groupings]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise KitaruUsageError(f"group_by names {duplicate!r} twice; group by it once.")
    return groupings


def parse_metrics(metrics: Iterable[Any]) -> list[ExecutionStatisticsMetric]:
    if isinstance(metrics, str | Mapping | ExecutionStatisticsMetric):
        metrics = [metrics]
    parsed = [ExecutionStatisticsMetric.parse(token) for token in metrics]
    names = [m.name for m in parsed]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise KitaruUsageError(
            f"Two metrics are named {duplicate!r}; give each metric its own name."
        )
    return parsed


def _bucket(timestamp: float | None, granularity: ExecutionStatisticsTimeGranularity) -> str | None:
    """The start of the UTC hour/day/ISO week (Monday)/month holding ``timestamp``."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    if granularity is ExecutionStatisticsTimeGranularity.HOUR:
        start = moment.replace(minute=0, second=0, microsecond=0)
    elif granularity is ExecutionStatisticsTimeGranularity.DAY:
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    elif granularity is ExecutionStatisticsTimeGranularity.WEEK:
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day - timedelta(days=day.weekday())
    else:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.isoformat()


def _tags(metadata: Mapping[str, Any]) -> list[str]:
    tags = metadata.get("tags")
    if isinstance(tags, str):
        return [tags]
    if isinstance(tags, list | tuple):
        return [str(tag) for tag in tags]
    return []


def _flow_id(flow_ref: Any) -> str | None:
    if not isinstance(flow_ref, Mapping):
        return None
    module, qualname = flow_ref.get("module"), flow_ref.get("qualname")
    return f"{module}:{qualname}" if module and qualname else None


def _hashable(value: Any) -> Any:
    """A metadata value usable in a group key (lists/dicts by their JSON text)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _aggregate(
    values: list[float], aggregation: ExecutionStatisticsMetricAggregation
) -> float | None:
    if not values:
        return None
    if aggregation is ExecutionStatisticsMetricAggregation.SUM:
        return float(sum(values))
    if aggregation is ExecutionStatisticsMetricAggregation.MIN:
        return float(min(values))
    if aggregation is ExecutionStatisticsMetricAggregation.MAX:
        return float(max(values))
    return float(sum(values) / len(values))


def compute_statistics(
    store: Store,
    *,
    group_by: Sequence[Any] = (),
    metrics: Sequence[Any] = (),
    flow: str | None = None,
    status: Sequence[str] | None = None,
    stack: str | None = None,
    tags: Sequence[str] | None = None,
    max_groups: int = 1000,
) -> ExecutionStatistics:
    """Statistics over the store's executions; ``status`` already normalised to values."""
    max_groups = _check_max_groups(max_groups)
    groupings = parse_groupings(group_by)
    parsed_metrics = parse_metrics(metrics)
    if isinstance(tags, str):
        tags = [tags]
    wanted_tags = [str(tag) for tag in tags or ()]
    if not all(storable_text(v) for v in (flow, stack)):
        # Undecodable text (from argv) names no stored flow or stack: nothing matches.
        return ExecutionStatistics(groups=[], truncated=False, group_count=0)

    ex = t.executions.c
    where: list[Any] = []
    if flow is not None:
        where.append(ex.flow_name == flow)
    if status:
        where.append(ex.status.in_(list(status)))
    if stack is not None:
        where.append(ex.stack == stack)
    query = sa.select(
        ex.id,
        ex.flow_ref,
        ex.status,
        ex.stack,
        ex.metadata,
        ex.started_at,
        ex.ended_at,
        ex.created_at,
    ).where(*where)
    sources = {m.source for m in parsed_metrics}
    counts: dict[str, tuple[int, int, int]] = {}
    llm: dict[str, dict[str, float]] = {}
    with store.read() as conn:
        rows = conn.execute(query).all()
        if sources & set(_LLM_SOURCES):
            llm = _llm_totals(conn, sa.select(ex.id).where(*where))
        if sources & {
            ExecutionStatisticsMetricSource.STEP_COUNT,
            ExecutionStatisticsMetricSource.CACHED_STEP_COUNT,
            ExecutionStatisticsMetricSource.OUTPUT_ARTIFACT_COUNT,
        }:
            counts = _call_counts(conn, sa.select(ex.id).where(*where))

    groups: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        metadata = row.metadata if isinstance(row.metadata, Mapping) else {}
        execution_tags = _tags(metadata)
        if wanted_tags and not set(wanted_tags) <= set(execution_tags):
            continue
        key_options: list[list[Any]] = []
        for grouping in groupings:
            dimension = grouping.dimension
            if dimension is ExecutionStatisticsDimension.STATUS:
                key_options.append([row.status])
            elif dimension is ExecutionStatisticsDimension.FLOW:
                key_options.append([_flow_id(row.flow_ref)])
            elif dimension is ExecutionStatisticsDimension.STACK:
                key_options.append([row.stack])
            elif dimension is ExecutionStatisticsDimension.TAG:
                # An execution with several tags counts in each tag's group.
                key_options.append(sorted(set(execution_tags)) or [None])
            elif dimension is ExecutionStatisticsDimension.TIME:
                assert grouping.time_granularity is not None
                moment = row.started_at if row.started_at is not None else row.created_at
                key_options.append([_bucket(moment, grouping.time_granularity)])
            else:
                key_options.append([_hashable(metadata.get(grouping.metadata_key or ""))])
        for key in _product(key_options):
            groups.setdefault(key, []).append((row, metadata))

    results = []
    for key, members in groups.items():
        values: dict[str, float | None] = {}
        for metric in parsed_metrics:
            samples = [
                v
                for v in (
                    _metric_value(metric, row, metadata, counts, llm) for row, metadata in members
                )
                if v is not None
            ]
            values[metric.name] = _aggregate(samples, metric.aggregation)
        results.append(
            ExecutionStatisticsGroup(
                keys={g.name: value for g, value in zip(groupings, key, strict=True)},
                execution_count=len(members),
                metrics=values,
            )
        )
    # Largest groups first; equal counts in a stable order of their keys.
    results.sort(key=lambda g: (-g.execution_count, [str(v) for v in g.keys.values()]))
    return ExecutionStatistics(
        groups=results[:max_groups],
        truncated=len(results) > max_groups,
        group_count=len(results),
    )


def _product(options: list[list[Any]]) -> Iterable[tuple[Any, ...]]:
    import itertools

    return itertools.product(*options)


def _call_counts(conn: sa.Connection, exec_ids: sa.Select[Any]) -> dict[str, tuple[int, int, int]]:
    """(steps, cached steps, output artifacts) per execution: two aggregate queries."""
    c = t.checkpoint_calls.c
    is_step = sa.or_(c.type.is_(None), c.type != _SAVE_CALL_TYPE)
    one = sa.literal(1)
    zero = sa.literal(0)
    calls = conn.execute(
        sa.select(
            c.exec_id,
            sa.func.count(),
            sa.func.sum(sa.case((c.status.in_(["cached", "reused"]), one), else_=zero)),
            # An output is an artifact row or kept in the call row (_store.call_outputs).
            sa.func.sum(
                sa.case(
                    (sa.or_(c.artifact_id.is_not(None), c.output_serializer.is_not(None)), one),
                    else_=zero,
                )
            ),
        )
        .where(c.exec_id.in_(exec_ids.scalar_subquery()), is_step)
        .group_by(c.exec_id)
    ).all()
    a = t.artifacts.c
    saved: dict[str, int] = dict(
        conn.execute(
            sa.select(a.exec_id, sa.func.count())
            .where(a.exec_id.in_(exec_ids.scalar_subquery()), a.kind == "saved")
            .group_by(a.exec_id)
        ).all()
    )
    counts = {
        exec_id: (int(steps), int(cached or 0), int(outputs or 0) + int(saved.pop(exec_id, 0)))
        for exec_id, steps, cached, outputs in calls
    }
    for exec_id, number in saved.items():  # saved only from the flow body
        counts[exec_id] = (0, 0, int(number))
    return counts


def _metric_value(
    metric: ExecutionStatisticsMetric,
    row: Any,
    metadata: Mapping[str, Any],
    counts: Mapping[str, tuple[int, int, int]],
    llm: Mapping[str, Mapping[str, float]] | None = None,
) -> float | None:
    source = metric.source
    if source is ExecutionStatisticsMetricSource.DURATION:
        if row.started_at is None or row.ended_at is None:
            return None  # still running: no duration yet
        return float(row.ended_at - row.started_at)
    if source is ExecutionStatisticsMetricSource.STEP_COUNT:
        return float(counts.get(row.id, (0, 0, 0))[0])
    if source is ExecutionStatisticsMetricSource.CACHED_STEP_COUNT:
        return float(counts.get(row.id, (0, 0, 0))[1])
    if source is ExecutionStatisticsMetricSource.OUTPUT_ARTIFACT_COUNT:
        return float(counts.get(row.id, (0, 0, 0))[2])
    if source is ExecutionStatisticsMetricSource.METADATA:
        return _number(metadata.get(metric.metadata_key or ""))
    totals = (llm or {}).get(row.id)
    if totals is None:
        return None  # no LLM usage
    return totals.get(str(source))


_LLM_SOURCES = (
    ExecutionStatisticsMetricSource.LLM_DISPLAY_COST,
    ExecutionStatisticsMetricSource.LLM_TOTAL_TOKENS,
    ExecutionStatisticsMetricSource.LLM_ESTIMATED_COST,
    ExecutionStatisticsMetricSource.LLM_PROMPT_TOKENS,
    ExecutionStatisticsMetricSource.LLM_COMPLETION_TOKENS,
    ExecutionStatisticsMetricSource.LLM_CALL_COUNT,
)


def _llm_totals(conn: sa.Connection, exec_ids: sa.Select[Any]) -> dict[str, dict[str, float]]:
    """Per execution, the totals of the LLM usage its calls incurred (see _runtime/usage)."""
    from kitaru._runtime.usage import LLM_USAGE_KEY, usage_records

    c = t.checkpoint_calls.c
    rows = conn.execute(
        sa.select(c.exec_id, c.metadata).where(
            c.exec_id.in_(exec_ids.scalar_subquery()),
            c.status.not_in(["cached", "reused"]),  # paid for by another execution
            sa.cast(c.metadata, sa.Text).like(f"%{LLM_USAGE_KEY}%"),
        )
    ).all()
    Source = ExecutionStatisticsMetricSource
    totals: dict[str, dict[str, float]] = {}
    for exec_id, metadata in rows:
        records = usage_records(metadata if isinstance(metadata, Mapping) else {})
        if not records:
            continue
        into = totals.setdefault(exec_id, {str(source): 0.0 for source in _LLM_SOURCES})
        for record in records:
            into[Source.LLM_CALL_COUNT] += 1
            for source, key in (
                (Source.LLM_TOTAL_TOKENS, "total_tokens"),
                (Source.LLM_PROMPT_TOKENS, "prompt_tokens"),
                (Source.LLM_COMPLETION_TOKENS, "completion_tokens"),
                (Source.LLM_DISPLAY_COST, "cost_usd"),
            ):
                value = _number(record.get(key))
                if value is not None:
                    into[source] += value
            cost = _number(record.get("cost_usd"))
            if cost is not None and record.get("cost_source") == "estimated":
                into[Source.LLM_ESTIMATED_COST] += cost
    return totals
