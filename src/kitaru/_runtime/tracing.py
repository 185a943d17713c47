"""OpenTelemetry spans for executions and checkpoint calls (the ``otel`` extra).

Without ``opentelemetry-api`` installed every function here is a no-op. With
it, spans go to whatever tracer provider the application configured (none:
the API's non-recording spans, nearly free). OpenTelemetry is imported on the
first span after the application imported it, never with ``import kitaru``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

_trace: Any = None
_tracer: Any = None
_loaded = False
_provider_from_env = False


def _load() -> Any:
    global _trace, _tracer, _loaded
    if not _loaded:
        # Spans go somewhere only once the application set a tracer provider: it
        # imported opentelemetry.trace to do so, or names one in the environment.
        # Until then importing the API (~15 ms) would only slow down start-up.
        if "opentelemetry.trace" not in sys.modules and not _env_provider():
            return None
        _loaded = True
        try:
            from opentelemetry import trace
        except ImportError:  # the extra is not installed
            return None
        from kitaru._version import __version__

        global _provider_from_env
        _provider_from_env = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
        _trace = trace
        _tracer = trace.get_tracer("kitaru", __version__)
    return _tracer


_provider_set = False
_env_checked: bool | None = None


def _env_provider() -> bool:
    """Is a tracer provider named by ``OTEL_PYTHON_TRACER_PROVIDER``? (read once)"""
    global _env_checked
    if _env_checked is None:
        _env_checked = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
    return _env_checked


def enabled() -> bool:
    """Is there a tracer provider to send spans to? (The application may set one late.)"""
    global _provider_set
    if _provider_set:
        return True  # OpenTelemetry sets the global provider once, for good
    if _load() is None:
        return False
    # The API's own global, read directly: get_tracer_provider() looks up an
    # environment variable on every call, a few microseconds per checkpoint.
    if getattr(_trace, "_TRACER_PROVIDER", True) is None and not _provider_from_env:
        return False
    # Until the application sets a provider the API hands out a proxy whose spans
    # record nothing: skip making them.
    _provider_set = not isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider)
    return _provider_set


def span(name: str, attributes: dict[str, Any]) -> contextlib.AbstractContextManager[Any]:
    if not enabled():
        return contextlib.nullcontext()
    return _tracer.start_as_current_span(name, attributes=attributes)  # type: ignore[no-any-return]


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span (``kitaru.<key>``), if tracing is on."""
    if not _provider_set:
        return
    current = _trace.get_current_span()
    if current.is_recording():
        for key, value in attributes.items():
            if value is not None:
                current.set_attribute(f"kitaru.{key}", value)
