"""LLM usage records: what one model request used and cost, kept on the call that made it.

One shape for ``kitaru.llm()`` and the framework adapters, so that the client,
CLI, statistics and dashboard read a single list. Records live in the call's
metadata under :data:`LLM_USAGE_KEY` (a list, one entry per model request) and
are therefore written in the same transaction as the call's result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict

from kitaru._runtime.context import current_checkpoint
from kitaru.errors import KitaruContextError

#: Metadata key of a call's usage records.
LLM_USAGE_KEY = "llm_usage"


class LlmUsage(TypedDict, total=False):
    """One model request. Token counts and cost are None when unknown."""

    model: str
    provider: str
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None
    #: "provider" (the provider returned it), "estimated" (price table) or None.
    cost_source: Literal["provider", "estimated"] | None
    latency_ms: float | None
    #: Where the credential came from: an env var name or "secret:NAME"; never the value.
    credential_source: str | None


def record_llm_usage(usage: LlmUsage) -> None:
    """Append ``usage`` to the running call's usage records.

    Raises KitaruContextError outside a checkpoint or durable LLM/tool call.
    """
    frame = current_checkpoint.get()
    if frame is None:
        raise KitaruContextError(
            "LLM usage can only be recorded inside a running call (a checkpoint, "
            "kitaru.llm(), or an adapter's durable call)."
        )
    records = frame.metadata.get(LLM_USAGE_KEY)
    if not isinstance(records, list):
        records = []
    frame.metadata[LLM_USAGE_KEY] = [*records, dict(usage)]


def usage_records(metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The usage records stored in a call's metadata (empty when none)."""
    records = metadata.get(LLM_USAGE_KEY)
    if not isinstance(records, list):
        return []
    return [r for r in records if isinstance(r, dict)]
