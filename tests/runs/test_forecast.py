"""The forecast every explain shows: tokens and cost per stage, from the schedule and the
prices until the profile has history, then from that history (median and p90); a warning
when it exceeds the run's budget."""

from __future__ import annotations

import pytest

from runs.forecast import CALL_INPUT_TOKENS, CALL_OUTPUT_TOKENS, HISTORY_MIN, run_forecast
from runs.models import Run, StageRun
from swarm.providers.pricing import cost_usd
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db

OPUS = "anthropic/claude-opus-4.1"


def _config(**kw):
    models = {role: OPUS for role in ("proponent", "skeptic", "pragmatist", "mediator")}
    return {
        "rounds": 2,
        "models": {"plan": models, "research": models},
        "backends": {OPUS: "anthropic"},
        **kw,
    }


def test_without_history_it_prices_the_schedule_with_the_roles_models():
    f = run_forecast(profile_name="p", stages=["plan", "research"], config=_config())
    plan = f.stages[0]
    assert (plan.basis, plan.calls) == ("estimate (10 calls)", 10)
    assert plan.tokens == plan.tokens_p90 == 10 * (CALL_INPUT_TOKENS + CALL_OUTPUT_TOKENS)
    one_call = cost_usd(OPUS, CALL_INPUT_TOKENS, CALL_OUTPUT_TOKENS)
    assert plan.cost_usd == pytest.approx(round(10 * one_call, 4)) and plan.cost_usd > 0
    assert f.tokens == 2 * plan.tokens and f.warnings == []

    free = run_forecast(
        profile_name="p",
        stages=["plan"],
        config=_config(consensus_free=["plan"], backends={OPUS: "offline"}),
    )
    assert (free.stages[0].calls, free.cost_usd) == (1, 0.0)  # offline answers cost nothing


def test_with_enough_history_it_takes_the_median_and_the_90th_percentile():
    for tokens in (1_000, 2_000, 3_000, 10_000)[: HISTORY_MIN + 1]:
        run = RunFactory(profile_name="team", status=Run.Status.SUCCEEDED, stage_to="research")
        StageRun.objects.filter(run=run, stage="plan").update(
            status=StageRun.Status.SUCCEEDED,
            input_tokens=tokens,
            output_tokens=0,
            cost_usd=tokens / 1_000_000,
        )
    RunFactory(profile_name="team", status=Run.Status.FAILED)  # not a finished sample
    RunFactory(profile_name="other", status=Run.Status.SUCCEEDED)  # another profile

    f = run_forecast(profile_name="team", stages=["plan", "research"], config=_config())
    plan, research = f.stages
    assert plan.basis == f"history ({HISTORY_MIN + 1} runs)"
    assert (plan.tokens, plan.tokens_p90) == (2_500, 10_000)
    assert plan.cost_usd == pytest.approx(0.0025) and plan.cost_usd_p90 == pytest.approx(0.01)
    assert research.basis.startswith("estimate")  # no research stage ever succeeded


def test_a_forecast_above_the_budget_warns():
    f = run_forecast(
        profile_name="p",
        stages=["plan", "research"],
        config=_config(budget_tokens=50_000, budget_cost_usd=0.01),
    )
    assert len(f.warnings) == 2
    assert f.warnings[0].startswith(f"expected {f.tokens:,} tokens")
    assert "against a budget of 50,000" in f.warnings[0] and "budget reached" in f.warnings[0]
    assert "against a budget of $0.01" in f.warnings[1]
