"""LLM usage records: what one model request used and cost, kept on the call that made it.

One shape for ``kitaru.llm()`` and the framework adapters, so that the client,
CLI, statistics and dashboard read a single list. Records live in the call's
metadata under :data:`LLM_USAGE_KEY` (a list, one entry per model request) and
are therefore written in the same transaction as the call's result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    #: The attempt of the call that made the request (1-based; set by record_llm_usage).
    attempt: int | None
    #: True for KITARU_LLM_MOCK_RESPONSE replies (no request was sent).
    mocked: bool
    #: The model alias the call named, if it named one.
    alias: str | None


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
    entry: dict[str, Any] = dict(usage)
    entry.setdefault("attempt", frame.attempt)
    frame.metadata[LLM_USAGE_KEY] = [*records, entry]


def usage_records(metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The usage records stored in a call's metadata (empty when none)."""
    records = metadata.get(LLM_USAGE_KEY)
    if not isinstance(records, list):
        return []
    return [r for r in records if isinstance(r, dict)]


#: Numeric fields that add up across records.
SUMMED_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "cost_usd")


def summarize_usage(records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Totals of usage records (None when there are none).

    ``call_count`` is the number of model requests; a field is None when no
    record knows it (e.g. cost with estimates off and no provider cost).
    """
    if not records:
        return None
    totals: dict[str, Any] = {"call_count": len(records)}
    for key in SUMMED_FIELDS:
        values = [r[key] for r in records if isinstance(r.get(key), int | float)]
        totals[key] = (
            (round(sum(values), 10) if key == "cost_usd" else sum(values)) if values else None
        )
    models = sorted({str(r["model"]) for r in records if r.get("model")})
    totals["models"] = models
    return totals
