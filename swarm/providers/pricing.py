"""List prices of the models Tekton routes to by default, in US dollars per million tokens.

Prices are the vendors' published list prices when this table was written (gateways add
their own margin); they estimate a run's cost and enforce its budget, they are not a bill.
Unknown models and the offline/replay backends cost 0.0. A profile may price models
itself (`prices`, {model id: (input, output)}): its prices win over this table, and its
models are priced at their input price for cache reads and writes too.

Prompt caching: input tokens read from the cache and tokens written to it are priced apart
(CACHE_PRICES). Anthropic bills a cache read at 0.1x its input price and a 5-minute cache
write at 1.25x; OpenAI writes for free and reads at each model's published cached price.
A model without a cache price pays its full input price for both (an over-estimate).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from swarm.providers.base import Usage

Prices = Mapping[str, tuple[float, float]]

# model id -> (input $/M tokens, output $/M tokens)
PRICES: dict[str, tuple[float, float]] = {
    "anthropic/claude-opus-4.6": (5.0, 25.0),
    "anthropic/claude-sonnet-4.6": (3.0, 15.0),
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
ANTHROPIC_CACHE_READ = 0.1
ANTHROPIC_CACHE_WRITE = 1.25

# model id -> (cached input read $/M tokens, cache write $/M tokens)
CACHE_PRICES: dict[str, tuple[float, float]] = {
    **{
        model_id: (price[0] * ANTHROPIC_CACHE_READ, price[0] * ANTHROPIC_CACHE_WRITE)
        for model_id, price in PRICES.items()
        if model_id.startswith("anthropic/")
    },
    "openai/gpt-4o": (1.25, 2.5),
    "openai/gpt-4o-mini": (0.075, 0.15),
    "openai/gpt-4.1": (0.5, 2.0),
    "openai/gpt-4.1-mini": (0.1, 0.4),
    "openai/gpt-5": (0.125, 1.25),
    "openai/gpt-5-mini": (0.025, 0.25),
    "openai/gpt-5-codex": (0.125, 1.25),
}


def _normalise(model_part: str) -> str:
    # Vendors spell versions differently ("claude-opus-4.1" vs "claude-opus-4-1").
    return re.sub(r"(\d)[.-](\d)", r"\1.\2", model_part.lower())


def _by_part(table: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    return {_normalise(model_id.split("/", 1)[1]): price for model_id, price in table.items()}


_BY_MODEL_PART = _by_part(PRICES)
_CACHE_BY_MODEL_PART = _by_part(CACHE_PRICES)


def _lookup(
    model: str, table: dict[str, tuple[float, float]], by_part: dict[str, tuple[float, float]]
) -> tuple[float, float] | None:
    if model in table:
        return table[model]
    vendor, _, rest = model.partition("/")
    if vendor in FREE_VENDORS:
        return None
    return by_part.get(_normalise(rest or vendor))


def price_for(model: str, prices: Prices | None = None) -> tuple[float, float] | None:
    """(input, output) $/M tokens for `model` (vendor/model), or None when unknown.

    The profile's `prices` win; then an exact id; otherwise the part after the vendor is
    matched, so the same model routed through another prefix ("codex/gpt-5-codex") is
    still priced."""
    if prices and model in prices:
        given = prices[model]
        return (float(given[0]), float(given[1]))
    return _lookup(model, PRICES, _BY_MODEL_PART)


def cache_price_for(model: str, prices: Prices | None = None) -> tuple[float, float] | None:
    """(cached read, cache write) $/M tokens for `model`: its cache price, else its input
    price for both; None when the model is unknown or free."""
    price = price_for(model, prices)
    if price is None:
        return None
    if prices and model in prices:
        return (price[0], price[0])
    return _lookup(model, CACHE_PRICES, _CACHE_BY_MODEL_PART) or (price[0], price[0])


def cost_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
    prices: Prices | None = None,
) -> float:
    """Estimated cost of one call in US dollars; 0.0 for unknown, offline or replayed models.

    `input_tokens` counts all input tokens (as Usage does); the cached reads and cache
    writes among them are priced at the model's cache prices, the rest at its input price."""
    price = price_for(model, prices)
    if price is None:
        return 0.0
    cached = max(cached_input_tokens, 0)
    written = max(cache_write_tokens, 0)
    plain = max(max(input_tokens, 0) - cached - written, 0)
    read_price, write_price = cache_price_for(model, prices) or (price[0], price[0])
    dollars = (
        plain * price[0]
        + cached * read_price
        + written * write_price
        + max(output_tokens, 0) * price[1]
    )
    return dollars / 1_000_000


def usage_cost_usd(model: str, usage: Usage, prices: Prices | None = None) -> float:
    """cost_usd of a call's Usage."""
    return cost_usd(
        model,
        usage.input_tokens,
        usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        prices=prices,
    )


FREE_BACKENDS = frozenset({"offline", "replay"})


def unpriced_models(backends: Mapping[str, str], prices: Prices | None = None) -> list[str]:
    """The models (of {model id: the backend answering it}) that would cost money but have
    no price: a cost budget cannot be kept for them. Offline and replayed ones are free."""
    return sorted(
        model
        for model, backend in backends.items()
        if backend not in FREE_BACKENDS and price_for(model, prices) is None
    )
