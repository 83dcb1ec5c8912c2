import pytest

from swarm.providers.pricing import PRICES, cost_usd, price_for

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
