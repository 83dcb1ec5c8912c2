import pytest

from swarm.providers.base import Usage
from swarm.providers.pricing import PRICES, cache_price_for, cost_usd, price_for, usage_cost_usd

DEFAULT_MODELS = [
    "anthropic/claude-opus-4.1",
    "openai/gpt-4o",
    "perplexity/llama-3.3-sonar-large-128k-online",
    "x-ai/grok-2-mini",
    "openai/gpt-5-codex",
]


@pytest.mark.parametrize("model", DEFAULT_MODELS)
def test_default_models_have_a_price(model):
    input_price, output_price = price_for(model)
    assert input_price > 0 and output_price > 0


def test_cost_is_tokens_times_price_per_million():
    input_price, output_price = PRICES["openai/gpt-4o"]
    expected = (1_000 * input_price + 2_000 * output_price) / 1_000_000
    assert cost_usd("openai/gpt-4o", 1_000, 2_000) == pytest.approx(expected)


def test_one_million_tokens_each_costs_the_sum_of_both_prices():
    input_price, output_price = PRICES["anthropic/claude-opus-4.1"]
    assert cost_usd("anthropic/claude-opus-4.1", 1_000_000, 1_000_000) == pytest.approx(
        input_price + output_price
    )


def test_other_spellings_of_a_known_model_are_priced():
    # Anthropic spells the version with a dash; a codex/ prefix routes the same model.
    assert price_for("anthropic/claude-opus-4-1") == PRICES["anthropic/claude-opus-4.1"]
    assert price_for("codex/gpt-5-codex") == PRICES["openai/gpt-5-codex"]


@pytest.mark.parametrize(
    "model", ["offline/anything", "replay/gpt-4o", "acme/unknown-model", "nonsense"]
)
def test_unknown_offline_and_replay_cost_nothing(model):
    assert cost_usd(model, 10_000, 10_000) == 0.0


# --- prompt caching ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    ["anthropic/claude-opus-4.1", "anthropic/claude-sonnet-4.5", "claude-cli/claude-haiku-4-5"],
)
def test_anthropic_reads_cost_a_tenth_and_writes_a_quarter_more(model):
    input_price, _ = price_for(model)
    read, write = cache_price_for(model)
    assert read == pytest.approx(input_price * 0.1)
    assert write == pytest.approx(input_price * 1.25)


@pytest.mark.parametrize(
    ("model", "ratio"),
    [
        ("openai/gpt-4o", 0.5),
        ("openai/gpt-4.1", 0.25),
        ("openai/gpt-5", 0.1),
        ("codex/gpt-5-codex", 0.1),
    ],
)
def test_openai_cached_input_at_the_models_cached_price(model, ratio):
    input_price, _ = price_for(model)
    read, write = cache_price_for(model)
    assert read == pytest.approx(input_price * ratio)
    assert write == input_price  # OpenAI charges nothing extra to write the cache


def test_a_model_without_a_cache_price_pays_full_input_for_cached_tokens():
    input_price, _ = price_for("x-ai/grok-2-mini")
    assert cache_price_for("x-ai/grok-2-mini") == (input_price, input_price)
    assert cost_usd("x-ai/grok-2-mini", 1000, 0, cached_input_tokens=900) == pytest.approx(
        cost_usd("x-ai/grok-2-mini", 1000, 0)
    )


def test_cost_splits_input_into_plain_cached_and_written():
    model = "anthropic/claude-opus-4.1"
    usage = Usage(
        input_tokens=10_000,
        output_tokens=1_000,
        cached_input_tokens=8_000,
        cache_write_tokens=1_500,
    )
    (input_price, output_price), (read, write) = price_for(model), cache_price_for(model)
    expected = (500 * input_price + 8_000 * read + 1_500 * write + 1_000 * output_price) / 1_000_000
    assert usage_cost_usd(model, usage) == pytest.approx(expected)
    # Caching makes the same call cheaper than paying full price for every input token.
    assert usage_cost_usd(model, usage) < cost_usd(model, 10_000, 1_000)


def test_cached_counts_beyond_the_input_never_cost_negative():
    assert cost_usd("openai/gpt-4o", 100, 0, cached_input_tokens=500) >= 0.0
    assert cost_usd("offline/x", 100, 10, cached_input_tokens=50) == 0.0
