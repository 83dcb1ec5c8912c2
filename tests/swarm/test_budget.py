"""Budgets in the engine: each call reserves its estimate first and settles after; a
reservation that does not fit blocks the stage with "budget reached: ..."."""

from __future__ import annotations

import re

from swarm.budget import StageBudget, request_estimate
from swarm.debate import stage_run
from swarm.providers.base import CompletionRequest, Message
from swarm.providers.router import router_build
from tests.swarm.conftest import ScriptedCompleter, by_kind, config, stage_input


class LoggingBudget(StageBudget):
    """A StageBudget that remembers every reservation it was asked for."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.asked: list[tuple[str, int, float]] = []

    async def reserve(self, *, stage, role, tokens, cost_usd):
        self.asked.append((role, tokens, cost_usd))
        return await super().reserve(stage=stage, role=role, tokens=tokens, cost_usd=cost_usd)


class PricedCompleter(ScriptedCompleter):
    def price_for(self, model):
        return (1000.0, 1000.0)  # $/M tokens: a call costs about a dollar


async def go(facts, budget, completer=None, **cfg_kw):
    completer = completer or ScriptedCompleter(by_kind())
    out = await stage_run(
        stage_input(facts),
        config(**cfg_kw),
        completer=completer,
        emit=lambda e: None,
        budget=budget,
    )
    return out, completer


def test_estimate_is_the_request_text_at_four_characters_a_token_plus_max_tokens():
    request = CompletionRequest(
        model="test/m", messages=(Message("user", "x" * 400),), max_tokens=1000
    )
    assert request_estimate(request) == (100, 1000)


async def test_three_debaters_cannot_reserve_more_than_is_left(facts):
    probe = LoggingBudget()
    await go(facts, probe, max_tokens=50)
    opening = [tokens for _, tokens, _ in probe.asked[:3]]
    # Room for two of the three opening calls: the third is refused before it is made,
    # the two in flight finish and are counted, and nothing stays reserved.
    budget = StageBudget(tokens=opening[0] + opening[1] + opening[2] // 2)
    out, completer = await go(facts, budget, max_tokens=50)
    assert out.status == "blocked" and out.budget_reached
    assert len(completer.requests) == 2
    limit = budget.limit_tokens
    assert re.fullmatch(
        rf"budget reached: 0 of {limit:,} tokens \(the next call may need [\d,]+\)", out.reason
    )
    assert (out.input_tokens, out.output_tokens) == (200, 20)
    assert budget.held == {} and budget.spent_tokens == 220


async def test_a_spent_token_budget_blocks_with_how_far_it_went(facts):
    budget = StageBudget(tokens=400_000)
    budget.spent_tokens = 412_000
    out, completer = await go(facts, budget)
    assert out.status == "blocked"
    assert out.reason.startswith("budget reached: 412,000 of 400,000 tokens")
    assert completer.requests == [] and out.artifact is None


async def test_settling_releases_the_unused_part_so_the_stage_can_finish(facts):
    # Each reservation is far above what a call uses (110 tokens); without the release
    # after each call, the stage would run out after a few calls.
    probe = LoggingBudget()
    await go(facts, probe, max_tokens=2000)
    biggest = max(tokens for _, tokens, _ in probe.asked)
    budget = StageBudget(tokens=110 * len(probe.asked) + 3 * biggest)
    out, _ = await go(facts, budget, max_tokens=2000)
    assert out.status == "succeeded"
    assert budget.spent_tokens == 110 * len(probe.asked) and budget.held == {}


async def test_cost_budget_blocks_in_dollars(facts):
    budget = StageBudget(cost_usd=0.5)
    out, completer = await go(facts, budget, PricedCompleter(by_kind()), max_tokens=50)
    assert out.status == "blocked"
    assert re.fullmatch(
        r"budget reached: \$0\.00 of \$0\.50 \(the next call may need \$[\d.]+\)", out.reason
    )
    assert completer.requests == []


async def test_cost_budget_with_an_unpriced_model_blocks_naming_it(facts):
    out, completer = await go(facts, StageBudget(cost_usd=5.0))
    assert out.status == "blocked"
    assert out.reason.startswith("no price for test/proponent: a cost budget cannot be kept")
    assert completer.requests == []


async def test_offline_answers_cost_nothing_so_a_cost_budget_holds(facts):
    router = router_build(backend_override="offline", env={})
    assert router.price_for("anthropic/claude-opus-4.1") == (0.0, 0.0)
    budget = StageBudget(cost_usd=0.01)
    models = {role: "anthropic/claude-opus-4.1" for role in ("default",)}
    out = await stage_run(
        stage_input(facts),
        config(models=models),
        completer=router,
        emit=lambda e: None,
        budget=budget,
    )
    assert out.cost_usd == 0.0 and budget.spent_cost == 0.0
    assert out.input_tokens > 0 and not out.budget_reached


def test_a_real_backend_is_priced_by_the_profile_then_the_table():
    env = {"OPENROUTER_API_KEY": "k"}
    router = router_build(env=env, backend_override="auto", prices={"x-ai/new": (2.0, 4.0)})
    assert router.price_for("x-ai/new") == (2.0, 4.0)
    assert router.price_for("openai/gpt-4o") == (2.5, 10.0)
    assert router.price_for("x-ai/unknown") is None
