"""Token usage and cost of an adapter's model request, in the record shape ``kitaru.llm`` uses.

The cost is estimated the way ``kitaru.llm()`` does it (genai-prices' bundled
table, ``llm_estimated_costs`` as frozen into the execution), so adapter and
``kitaru.llm`` requests add up in the execution's totals.
"""

from __future__ import annotations

from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru._runtime.usage import LlmUsage, record_llm_usage


def _cost_mode() -> str:
    from kitaru._llm._registry import FROZEN_KEY

    ctx = current_execution.get()
    frozen = None if ctx is None else ctx.record.config.get(FROZEN_KEY)
    mode = frozen.get("llm_estimated_costs") if isinstance(frozen, dict) else None
    if mode is None:
        from kitaru.config import resolve_llm_estimated_costs

        mode = resolve_llm_estimated_costs()
    return str(mode)


def record_request_usage(
    *,
    model: str,
    provider: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    latency_ms: float | None = None,
    price_provider: str | None = None,
) -> None:
    """Add one model request's usage (and estimated cost) to the running call."""
    if current_checkpoint.get() is None:
        return
    from kitaru._llm._costs import estimate

    cost, source = estimate(
        price_provider=price_provider,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        provider_cost=None,
        mode=_cost_mode(),
    )
    total = None if prompt_tokens is None else prompt_tokens + (completion_tokens or 0)
    record: LlmUsage = {
        "model": model,
        "provider": provider,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": total,
        "cost_usd": cost,
        "cost_source": source,
        "latency_ms": latency_ms,
    }
    record_llm_usage(record)
