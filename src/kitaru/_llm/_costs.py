"""Estimated cost of one model request from genai-prices' bundled price table.

``KITARU_LLM_ESTIMATED_COSTS`` (or ``kitaru.configure(llm_estimated_costs=...)``,
``[tool.kitaru] llm_estimated_costs``), frozen per execution: ``auto`` estimates
when the table knows the model, ``off`` never does. A cost the provider reports
itself (OpenRouter) is used as is. The table ships inside the package: no
network access.
"""

from __future__ import annotations

import logging
from typing import Literal

logger = logging.getLogger("kitaru.llm")


def estimate(
    *,
    price_provider: str | None,
    model: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    provider_cost: float | None,
    mode: str,
) -> tuple[float | None, Literal["provider", "estimated"] | None]:
    """(cost in USD, where it came from); (None, None) when unknown or turned off."""
    if provider_cost is not None:
        return provider_cost, "provider"
    if mode == "off" or price_provider is None or prompt_tokens is None:
        return None, None
    try:
        from genai_prices import Usage, calc_price
    except ImportError:
        return None, None  # the llm extra brings it; without it costs stay unknown
    try:
        price = calc_price(
            Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens or 0),
            model,
            provider_id=price_provider,
        )
    except LookupError:
        return None, None  # a model the table does not know
    except Exception as exc:  # a price table problem must not fail the call
        logger.debug("no cost estimate for %s/%s: %s", price_provider, model, exc)
        return None, None
    return float(price.total_price), "estimated"
