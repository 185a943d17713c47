"""Kitaru: durable execution for Python AI agents.

Decorate the orchestration function with ``@flow`` and its units of work with
``@checkpoint``; every checkpoint's return value is persisted, so a crashed,
failed or paused execution continues where it stopped.
"""

from kitaru._runtime.context import current_execution_id, is_replay
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
from kitaru.client import KitaruClient
from kitaru.config import ImageSettings, KitaruConfig, configure
from kitaru.errors import (
    FailureOrigin,
    KitaruAmbiguousFlowResultError,
    KitaruBackendError,
    KitaruContextError,
    KitaruDivergenceError,
    KitaruError,
    KitaruExecutionError,
    KitaruFeatureNotAvailableError,
    KitaruLogRetrievalError,
    KitaruNotFoundError,
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
from kitaru.wait import wait

__all__ = [
    "ExecutionStatus",
    "FailureOrigin",
    "FlowHandle",
    "ImageSettings",
    "KitaruAmbiguousFlowResultError",
    "KitaruBackendError",
    "KitaruClient",
    "KitaruConfig",
    "KitaruContextError",
    "KitaruDivergenceError",
    "KitaruError",
    "KitaruExecutionError",
    "KitaruFeatureNotAvailableError",
    "KitaruLogRetrievalError",
    "KitaruNotFoundError",
    "KitaruRuntimeError",
    "KitaruStackIntegrationDependencyError",
    "KitaruStateError",
    "KitaruTimeoutError",
    "KitaruUsageError",
    "KitaruUserCodeError",
    "KitaruWaitAbortedError",
    "KitaruWaitValidationError",
    "StackInfo",
    "__version__",
    "checkpoint",
    "configure",
    "create_stack",
    "current_execution_id",
    "current_stack",
    "delete_stack",
    "flow",
    "is_replay",
    "list_stacks",
    "load",
    "log",
    "save",
    "use_stack",
    "wait",
]
