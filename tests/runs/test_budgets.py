"""A run's budgets: the reservation ledger shared by its stages, a stage that blocks when
the budget is reached, and a person raising the budget and retrying with nothing lost."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from runs.budgets import budget_held, budget_release_stage, budget_reserve, budget_settle
from runs.dispatch import run_inline
from runs.execution import stage_execute
from runs.models import Artifact, BudgetReservation, Run, RunEvent, StageRun
from runs.services import run_budget_set, stage_retry
from swarm.context import BudgetExceeded
from tekton_site.errors import FieldError, StateError
from tests.factories import RunFactory, frozen_config

pytestmark = pytest.mark.django_db


def budget_run(repo="/tmp/repo", stages=("plan",), **budget):
    stages = list(stages)
    return RunFactory(
        repo_path=str(repo),
        stage_from=stages[0],
        stage_to=stages[-1],
        config=frozen_config(stages, **budget),
    )


def stage_of(run, name) -> StageRun:
    return StageRun.objects.get(run=run, stage=name)


def reserve(run, tokens, cost=0.0, claim="c1", stage="plan"):
    return budget_reserve(
        run_id=run.pk,
        stage_run_id=stage_of(run, stage).pk,
        claim=claim,
        role="proponent",
        tokens=tokens,
        cost_usd=cost,
    )


# --- the ledger ----------------------------------------------------------------------------


def test_reservations_count_against_what_is_left_until_settled():
    run = budget_run(budget_tokens=1000)
    Run.objects.filter(pk=run.pk).update(input_tokens=300, output_tokens=100)
    first = reserve(run, 400)
    with pytest.raises(BudgetExceeded, match=r"^budget reached: 400 of 1,000 tokens"):
        reserve(run, 201)  # 400 spent + 400 held + 201 > 1000
    assert budget_held(run.pk) == (400, 0.0)
    # The call used 50 tokens: the recorder counts them, settling frees the other 350.
    Run.objects.filter(pk=run.pk).update(input_tokens=350)
    budget_settle(first)
    assert budget_held(run.pk) == (0, 0.0)
    reserve(run, 550)


def test_cost_reservations_are_in_dollars():
    run = budget_run(budget_cost_usd=1.0)
    reserve(run, 10, cost=0.75)
    with pytest.raises(BudgetExceeded, match=r"^budget reached: \$0\.00 of \$1\.00"):
        reserve(run, 10, cost=0.30)


def test_a_run_without_limits_reserves_anything():
    run = budget_run()
    reserve(run, 10**12, cost=10**6)


def test_releasing_a_stage_drops_only_its_claims_rows():
    run = budget_run(budget_tokens=1000)
    reserve(run, 100, claim="old")
    reserve(run, 100, claim="new")
    assert budget_release_stage(stage_run_id=stage_of(run, "plan").pk, claim="old") == 1
    assert list(BudgetReservation.objects.values_list("claim", flat=True)) == ["new"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_cannot_overshoot():
    # Eight callers race for a remainder with room for three: exactly three get it.
    run = budget_run(budget_tokens=1000)
    stage_id = stage_of(run, "plan").pk
    barrier = threading.Barrier(8)
    got, refused = [], []

    def caller(i: int) -> None:
        try:
            barrier.wait()
            budget_reserve(
                run_id=run.pk, stage_run_id=stage_id, claim=f"c{i}", role="skeptic",
                tokens=300, cost_usd=0.0,
            )  # fmt: skip
            got.append(i)
        except BudgetExceeded:
            refused.append(i)
        finally:
            connection.close()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(got), len(refused)) == (3, 5)
    assert budget_held(run.pk) == (900, 0.0)


# --- a stage that reaches the budget blocks -------------------------------------------------


def test_a_stage_whose_call_does_not_fit_blocks_with_how_far_the_budget_went(git_repo, fake_engine):
    run = budget_run(git_repo, ("plan", "research"), budget_tokens=500)
    Run.objects.filter(pk=run.pk).update(input_tokens=300, output_tokens=100)
    run_inline(run.pk)  # the fake engine reserves 120 tokens: 100 are left
    run.refresh_from_db()
    plan = stage_of(run, "plan")
    assert (run.status, plan.status) == ("blocked", "blocked")
    expected = "budget reached: 400 of 500 tokens (the next call may need 120)"
    assert plan.reason == expected
    assert run.reason == f"stage plan blocked: {expected}"
    event = RunEvent.objects.filter(run=run, kind="stage.blocked").get()
    assert event.payload["budget"] is True
    reached = RunEvent.objects.filter(run=run, kind="budget.reached").get()
    assert (reached.stage, reached.payload["reason"]) == ("plan", expected)
    assert (reached.payload["budget_tokens"], reached.payload["spent_tokens"]) == (500, 400)
    assert stage_of(run, "research").status == "queued"
    assert not BudgetReservation.objects.exists()


def test_a_spent_budget_blocks_before_the_engine_runs(git_repo, fake_engine):
    run = budget_run(git_repo, budget_tokens=400_000)
    Run.objects.filter(pk=run.pk).update(input_tokens=400_000, output_tokens=12_000)
    stage_execute(stage_run_id=stage_of(run, "plan").pk)
    assert fake_engine.calls == []
    plan = stage_of(run, "plan")
    assert plan.status == "blocked"
    assert plan.reason == "budget reached: 412,000 of 400,000 tokens"


def test_reservations_are_released_when_the_stage_ends(git_repo, fake_engine):
    run = budget_run(git_repo, budget_tokens=10_000)
    run_inline(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.total_tokens == 120
    assert not BudgetReservation.objects.exists()


def test_a_new_claim_drops_what_a_dead_worker_left_reserved(git_repo, fake_engine):
    run = budget_run(git_repo, budget_tokens=1000)
    reserve(run, 900, claim="dead-worker")
    run_inline(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded"


# --- a person raises the budget and retries ---------------------------------------------


def test_raising_the_budget_and_retrying_runs_the_stage_again_with_nothing_lost(
    git_repo, fake_engine
):
    run = budget_run(git_repo, ("plan", "research"), budget_tokens=200)
    run_inline(run.pk)  # plan spends 120; research needs 120 of the 80 left
    run.refresh_from_db()
    assert run.status == "blocked" and stage_of(run, "research").status == "blocked"
    plan_artifact = Artifact.objects.get(run=run, stage="plan")

    run_budget_set(run=run, tokens=1000)
    run.refresh_from_db()
    assert run.status == "blocked" and run.config["budget_tokens"] == 1000
    budget = RunEvent.objects.filter(run=run, kind="run.budget").get().payload
    assert (budget["tokens"], budget["before"]["tokens"], budget["spent"]["tokens"]) == (
        1000,
        200,
        120,
    )

    stage_retry(run=run, stage="research", note="")
    run_inline(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded"
    # research ran twice (refused its call, then again), plan once: its artifact stands.
    assert fake_engine.stages_called() == ["plan", "research", "research"]
    again = Artifact.objects.get(run=run, stage="plan")
    assert (again.pk, again.sha256, again.created_at) == (
        plan_artifact.pk,
        plan_artifact.sha256,
        plan_artifact.created_at,
    )
    assert run.total_tokens == 240


def test_budget_values_are_checked():
    run = budget_run(budget_tokens=10)
    with pytest.raises(FieldError) as err:
        run_budget_set(run=run, tokens=-1)
    assert err.value.field == "tokens"
    with pytest.raises(FieldError) as err:
        run_budget_set(run=run, cost_usd="lots")
    assert err.value.field == "cost_usd"
    with pytest.raises(FieldError):
        run_budget_set(run=run)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCEEDED)
    with pytest.raises(StateError):
        run_budget_set(run=run, tokens=100)


def test_a_cost_budget_is_refused_for_a_run_whose_models_have_no_price():
    run = budget_run()
    config = {**run.config, "backends": {"x-ai/grok-new": "openai", "openai/gpt-4o": "openai"}}
    Run.objects.filter(pk=run.pk).update(config=config)
    with pytest.raises(FieldError, match="x-ai/grok-new has none") as err:
        run_budget_set(run=run, cost_usd="2.50")
    assert err.value.field == "cost_usd"
    Run.objects.filter(pk=run.pk).update(config={**config, "prices": {"x-ai/grok-new": [1.0, 2.0]}})
    run_budget_set(run=run, cost_usd="2.50")
    run.refresh_from_db()
    assert run.config["budget_cost_usd"] == 2.5


# --- adapters: the command, the API, run creation ---------------------------------------


@pytest.fixture
def capped_profile(monkeypatch):
    """A profile with a cost budget whose model no price table knows, answered by a
    gateway (a key is set), not offline."""
    from config_profiles.models import Profile

    monkeypatch.setenv("TEKTON_LLM_BACKEND", "auto")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test")
    return Profile.objects.create(
        name="capped", stage_models={"default": "x-ai/grok-new"}, budget_cost_usd=1
    )


def test_the_budget_command_raises_the_budget_and_says_how_to_retry(git_repo, fake_engine):
    from tests.cli import tekton

    run = budget_run(git_repo, ("plan", "research"), budget_tokens=200)
    run_inline(run.pk)
    code, out, _ = tekton("budget", str(run.pk), "--tokens", "1000000", "--cost", "5")
    assert code == 0
    assert f"run {run.pk} budget: 1,000,000 tokens and $5.00 (spent 120 tokens" in out
    assert f'tekton retry {run.pk} research --note "budget raised"' in out
    run.refresh_from_db()
    assert (run.config["budget_tokens"], run.config["budget_cost_usd"]) == (1_000_000, 5.0)
    code, _, err = tekton("budget", str(run.pk), "--tokens", "-5")
    assert code == 2 and err.startswith("error: tokens must be")
    code, _, err = tekton("budget", str(run.pk))
    assert code == 2 and "--tokens" in err


def test_run_creation_with_a_cost_budget_and_unpriced_models_exits_2_naming_them(
    git_repo, capped_profile
):
    from tests.cli import tekton

    code, _, err = tekton("run", "--goal", "g", "--repo", str(git_repo), "--profile", "capped")
    assert code == 2
    assert err.startswith("error: a cost budget needs a price for every model")
    assert "x-ai/grok-new has none" in err and len(err.strip().splitlines()) == 1
    assert not Run.objects.exists()


def test_the_profile_may_price_the_model_so_the_run_starts(git_repo, capped_profile, no_dispatch):
    from runs.services import run_create

    capped_profile.prices = {"x-ai/grok-new": {"input": 1.0, "output": 2.0}}
    capped_profile.save()
    run = run_create(goal="g", repo_path=str(git_repo), profile_name="capped")
    assert run.config["prices"] == {"x-ai/grok-new": [1.0, 2.0]}


def test_a_cost_budget_with_offline_runs_is_fine(git_repo, capped_profile, monkeypatch):
    from runs.services import run_plan

    monkeypatch.setenv("TEKTON_LLM_BACKEND", "offline")
    plan = run_plan(goal="g", repo_path=str(git_repo), profile_name="capped")
    assert plan.config["budget_cost_usd"] == 1.0
    assert set(plan.config["backends"].values()) == {"offline"}


@pytest.fixture
def no_dispatch(monkeypatch):
    monkeypatch.setattr("runs.services.stages_dispatch", lambda ids: None)


def test_api_creation_with_a_cost_budget_and_unpriced_models_is_a_400(
    git_repo, capped_profile, user, no_dispatch
):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    body = {"goal": "g", "repo": str(git_repo), "profile": "capped"}
    response = client.post("/api/runs/", body, format="json")
    assert response.status_code == 400, response.json()
    assert "x-ai/grok-new has none" in " ".join(response.json()["errors"]["budget_cost_usd"])
    assert not Run.objects.exists()


def test_the_budget_endpoint_raises_the_budget_then_retry_runs_the_stage(
    git_repo, fake_engine, user
):
    from rest_framework.test import APIClient

    run = budget_run(git_repo, ("plan", "research"), budget_tokens=200)
    Run.objects.filter(pk=run.pk).update(owner=user)
    run_inline(run.pk)
    client = APIClient()
    client.force_authenticate(user)
    response = client.post(f"/api/runs/{run.pk}/budget/", {"tokens": -1}, format="json")
    assert response.status_code == 400 and "tokens" in response.json()["errors"]
    response = client.post(f"/api/runs/{run.pk}/budget/", {}, format="json")
    assert response.status_code == 200 and response.json()["budget"]["tokens"] == 200
    response = client.post(
        f"/api/runs/{run.pk}/budget/", {"tokens": 5000, "cost_usd": 2.5}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["budget"] == {"tokens": 5000, "cost_usd": 2.5}
    assert response.json()["status"] == "blocked"
    response = client.post(
        f"/api/runs/{run.pk}/stages/research/retry/", {"note": "budget raised"}, format="json"
    )
    assert response.status_code == 200
    run_inline(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded" and stage_of(run, "research").status == "succeeded"
    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCEEDED)
    response = client.post(f"/api/runs/{run.pk}/budget/", {"tokens": 1}, format="json")
    assert response.status_code == 409
