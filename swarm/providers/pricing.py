"""List prices of the models Tekton routes to by default, in US dollars per million tokens.

Prices are the vendors' published list prices when this table was written (gateways add
their own margin); they estimate a run's cost and enforce its budget, they are not a bill.
Unknown models and the offline/replay backends cost 0.0.
"""

from __future__ import annotations

import re

# model id -> (input $/M tokens, output $/M tokens)
PRICES: dict[str, tuple[float, float]] = {
    "anthropic/claude-opus-4.1": (15.0, 75.0),
    "anthropic/claude-opus-4": (15.0, 75.0),
    "anthropic/claude-sonnet-4.5": (3.0, 15.0),
    "anthropic/claude-sonnet-4": (3.0, 15.0),
    "anthropic/claude-3.7-sonnet": (3.0, 15.0),
    "anthropic/claude-haiku-4.5": (1.0, 5.0),
    "anthropic/claude-3.5-haiku": (0.8, 4.0),
    "openai/gpt-4o": (2.5, 10.0),
    "openai/gpt-4o-mini": (0.15, 0.6),
    "openai/gpt-4.1": (2.0, 8.0),
    "openai/gpt-4.1-mini": (0.4, 1.6),
    "openai/gpt-5": (1.25, 10.0),
    "openai/gpt-5-mini": (0.25, 2.0),
    "openai/gpt-5-codex": (1.25, 10.0),
    "perplexity/llama-3.3-sonar-large-128k-online": (1.0, 1.0),
    "perplexity/sonar": (1.0, 1.0),
    "perplexity/sonar-pro": (3.0, 15.0),
    "x-ai/grok-2-mini": (2.0, 10.0),
    "x-ai/grok-3-mini": (0.3, 0.5),
    "google/gemini-2.5-pro": (1.25, 10.0),
    "google/gemini-2.5-flash": (0.3, 2.5),
}
FREE_VENDORS = frozenset({"offline", "replay"})


def _normalise(model_part: str) -> str:
    # Vendors spell versions differently ("claude-opus-4.1" vs "claude-opus-4-1").
    return re.sub(r"(\d)[.-](\d)", r"\1.\2", model_part.lower())


_BY_MODEL_PART: dict[str, tuple[float, float]] = {
    _normalise(model_id.split("/", 1)[1]): price for model_id, price in PRICES.items()
}


def price_for(model: str) -> tuple[float, float] | None:
    """(input, output) $/M tokens for `model` (vendor/model), or None when unknown.

    An exact id wins; otherwise the part after the vendor is matched, so the same model
    routed through another prefix ("codex/gpt-5-codex") is still priced."""
    if model in PRICES:
        return PRICES[model]
    vendor, _, rest = model.partition("/")
    if vendor in FREE_VENDORS:
        return None
    return _BY_MODEL_PART.get(_normalise(rest or vendor))


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> float:
    """Estimated cost of one call in US dollars; 0.0 for unknown, offline or replayed models."""
    price = price_for(model)
    if price is None:
        return 0.0
    return (max(input_tokens, 0) * price[0] + max(output_tokens, 0) * price[1]) / 1_000_000
