"""Kitaru: durable execution for Python AI agents.

Decorate the orchestration function with ``@flow`` and its units of work with
``@checkpoint``; every checkpoint's return value is persisted, so a crashed,
failed or paused execution continues where it stopped.
"""

from typing import TYPE_CHECKING

from kitaru import events
from kitaru._lazy import lazy_getattr
from kitaru._runtime.context import current_execution_id, is_replay
from kitaru._runtime.events import progress
from kitaru._stacks import (
    StackInfo,
    create_stack,
    current_stack,
    delete_stack,
    list_stacks,
    use_stack,
)
from kitaru._store import ExecutionStatus
from kitaru._version import __version__
from kitaru.artifacts import load, save
from kitaru.checkpoint import checkpoint
from kitaru.config import ImageSettings, KitaruConfig, configure
from kitaru.errors import (
    FailureOrigin,
    KitaruAmbiguousFlowResultError,
    KitaruAuthenticationError,
    KitaruBackendError,
    KitaruContextError,
    KitaruDivergenceError,
    KitaruError,
    KitaruExecutionError,
    KitaruFeatureNotAvailableError,
    KitaruLogRetrievalError,
    KitaruNotFoundError,
    KitaruPermissionError,
    KitaruRuntimeError,
    KitaruStackIntegrationDependencyError,
    KitaruStateError,
    KitaruTimeoutError,
    KitaruUsageError,
    KitaruUserCodeError,
    KitaruWaitAbortedError,
    KitaruWaitValidationError,
)
from kitaru.flow import flow
from kitaru.handle import FlowHandle
from kitaru.logging import log
from kitaru.sleep import sleep
from kitaru.wait import wait

if TYPE_CHECKING:
    from kitaru._llm import KitaruLlmProviderError, llm
    from kitaru.analysis import (
        CheckpointDiff,
        CohortDiff,
        CohortQuery,
        CohortResult,
        ExecutionDiff,
        ExecutionStatistics,
        ExecutionStatisticsDimension,
        ExecutionStatisticsGroup,
        ExecutionStatisticsGrouping,
        ExecutionStatisticsMetric,
        ExecutionStatisticsMetricAggregation,
        ExecutionStatisticsMetricSource,
        ExecutionStatisticsTimeGranularity,
        build_compare_url,
        build_compare_url_for_executions,
        build_compare_urls,
        cohort,
        compare_url_for_executions,
        diff,
        diff_cohort,
        diff_matrix,
    )
    from kitaru.client import ExecutionEvent, KitaruClient
    from kitaru.client._remote_config import connect
    from kitaru.replay import ReplayRuntimeContext, ReplaySubmission, get_replay_runtime_context
    from kitaru.secrets import (
        Secret,
        SecretSummary,
        create_secret,
        delete_secret,
        get_secret,
        list_secrets,
    )

#: Names loaded on first use (kept out of ``import kitaru``'s cost).
_LAZY = {
    "ReplayRuntimeContext": "kitaru.replay",
    "ReplaySubmission": "kitaru.replay",
    "get_replay_runtime_context": "kitaru.replay",
    "CheckpointDiff": "kitaru.analysis",
    "CohortDiff": "kitaru.analysis",
    "CohortQuery": "kitaru.analysis",
    "CohortResult": "kitaru.analysis",
    "ExecutionDiff": "kitaru.analysis",
    "ExecutionStatistics": "kitaru.analysis",
    "ExecutionStatisticsDimension": "kitaru.analysis",
    "ExecutionStatisticsGroup": "kitaru.analysis",
    "ExecutionStatisticsGrouping": "kitaru.analysis",
    "ExecutionStatisticsMetric": "kitaru.analysis",
    "ExecutionStatisticsMetricAggregation": "kitaru.analysis",
    "ExecutionStatisticsMetricSource": "kitaru.analysis",
    "ExecutionStatisticsTimeGranularity": "kitaru.analysis",
    "cohort": "kitaru.analysis",
    "build_compare_url": "kitaru.analysis",
    "build_compare_url_for_executions": "kitaru.analysis",
    "build_compare_urls": "kitaru.analysis",
    "compare_url_for_executions": "kitaru.analysis",
    "diff": "kitaru.analysis",
    "diff_cohort": "kitaru.analysis",
    "diff_matrix": "kitaru.analysis",
    "connect": "kitaru.client._remote_config",
    # The client and its models: a script that only runs flows never needs them.
    "KitaruClient": "kitaru.client",
    "ExecutionEvent": "kitaru.client",
    "llm": "kitaru._llm",
    "KitaruLlmProviderError": "kitaru._llm",
    "Secret": "kitaru.secrets",
    "SecretSummary": "kitaru.secrets",
    "create_secret": "kitaru.secrets",
    "delete_secret": "kitaru.secrets",
    "get_secret": "kitaru.secrets",
    "list_secrets": "kitaru.secrets",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


__all__ = [
    "CheckpointDiff",
    "CohortDiff",
    "CohortQuery",
    "CohortResult",
    "ExecutionDiff",
    "ExecutionEvent",
    "ExecutionStatistics",
    "ExecutionStatisticsDimension",
    "ExecutionStatisticsGroup",
    "ExecutionStatisticsGrouping",
    "ExecutionStatisticsMetric",
    "ExecutionStatisticsMetricAggregation",
    "ExecutionStatisticsMetricSource",
    "ExecutionStatisticsTimeGranularity",
    "ExecutionStatus",
    "FailureOrigin",
    "FlowHandle",
    "ImageSettings",
    "KitaruAmbiguousFlowResultError",
    "KitaruAuthenticationError",
    "KitaruBackendError",
    "KitaruClient",
    "KitaruConfig",
    "KitaruContextError",
    "KitaruDivergenceError",
    "KitaruError",
    "KitaruExecutionError",
    "KitaruFeatureNotAvailableError",
    "KitaruLlmProviderError",
    "KitaruLogRetrievalError",
    "KitaruNotFoundError",
    "KitaruPermissionError",
    "KitaruRuntimeError",
    "KitaruStackIntegrationDependencyError",
    "KitaruStateError",
    "KitaruTimeoutError",
    "KitaruUsageError",
    "KitaruUserCodeError",
    "KitaruWaitAbortedError",
    "KitaruWaitValidationError",
    "ReplayRuntimeContext",
    "ReplaySubmission",
    "Secret",
    "SecretSummary",
    "StackInfo",
    "__version__",
    "build_compare_url",
    "build_compare_url_for_executions",
    "build_compare_urls",
    "checkpoint",
    "cohort",
    "compare_url_for_executions",
    "configure",
    "connect",
    "create_secret",
    "create_stack",
    "current_execution_id",
    "current_stack",
    "delete_secret",
    "delete_stack",
    "diff",
    "diff_cohort",
    "diff_matrix",
    "events",
    "flow",
    "get_replay_runtime_context",
    "get_secret",
    "is_replay",
    "list_secrets",
    "list_stacks",
    "llm",
    "load",
    "log",
    "progress",
    "save",
    "sleep",
    "use_stack",
    "wait",
]
