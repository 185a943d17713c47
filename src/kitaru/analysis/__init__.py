"""Analysis of stored executions (Kitaru 0.21): diffs of replays, cohorts, statistics.

Loaded on first use (``kitaru.diff``, ``kitaru.cohort``, ``client.executions.statistics``),
so that ``import kitaru`` stays cheap.
"""

from kitaru.analysis._cohort import CohortQuery, CohortResult, cohort
from kitaru.analysis._compare_urls import (
    build_compare_url,
    build_compare_url_for_executions,
    build_compare_urls,
    compare_url_for_executions,
)
from kitaru.analysis._diff import (
    CheckpointDiff,
    CohortDiff,
    ExecutionDiff,
    diff,
    diff_cohort,
    diff_matrix,
)
from kitaru.analysis._statistics import (
    ExecutionStatistics,
    ExecutionStatisticsDimension,
    ExecutionStatisticsGroup,
    ExecutionStatisticsGrouping,
    ExecutionStatisticsMetric,
    ExecutionStatisticsMetricAggregation,
    ExecutionStatisticsMetricSource,
    ExecutionStatisticsTimeGranularity,
)

__all__ = [
    "CheckpointDiff",
    "CohortDiff",
    "CohortQuery",
    "CohortResult",
    "ExecutionDiff",
    "ExecutionStatistics",
    "ExecutionStatisticsDimension",
    "ExecutionStatisticsGroup",
    "ExecutionStatisticsGrouping",
    "ExecutionStatisticsMetric",
    "ExecutionStatisticsMetricAggregation",
    "ExecutionStatisticsMetricSource",
    "ExecutionStatisticsTimeGranularity",
    "build_compare_url",
    "build_compare_url_for_executions",
    "build_compare_urls",
    "cohort",
    "compare_url_for_executions",
    "diff",
    "diff_cohort",
    "diff_matrix",
]
