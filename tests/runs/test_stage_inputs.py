"""runs.stage_inputs: what a stage starts from."""

from __future__ import annotations

import pytest

from runs.lifecycle import stage_artifacts_write
from runs.models import StageRun
from runs.stage_inputs import stage_config_build, stage_input_build
from swarm.context import BudgetExceeded
from tests.factories import RunFactory, frozen_config

pytestmark = pytest.mark.django_db


def _run(repo, stages, **config):
    return RunFactory(
        repo_path=str(repo),
        stage_from=stages[0],
        stage_to=stages[-1],
        config=frozen_config(stages, **config),
    )


def test_threat_never_sees_review_even_when_review_finished_first(git_repo):
    run = _run(git_repo, ["plan_update", "code", "review", "threat", "integrate"])
    for name in ("plan_update", "code", "review"):
        stage_artifacts_write(run=run, stage=name, artifact={"stage": name}, patch=None)
    threat = StageRun.objects.get(run=run, stage="threat")
    assert sorted(stage_input_build(run, threat).prior_artifacts) == ["code", "plan_update"]
    stage_artifacts_write(run=run, stage="threat", artifact={"stage": "threat"}, patch=None)
    integrate = StageRun.objects.get(run=run, stage="integrate")
    assert sorted(stage_input_build(run, integrate).prior_artifacts) == [
        "code", "plan_update", "review", "threat",
    ]  # fmt: skip


def test_the_input_carries_the_note_attempt_and_repository(git_repo):
    run = _run(git_repo, ["plan"])
    plan = StageRun.objects.get(run=run, stage="plan")
    StageRun.objects.filter(pk=plan.pk).update(note="shorter, please", attempt=2)
    plan.refresh_from_db()
    inp = stage_input_build(run, plan)
    assert (inp.note, inp.attempt, inp.run_id, inp.goal) == ("shorter, please", 2, run.pk, run.goal)
    assert inp.repo.path == str(git_repo) and "README.md" in inp.repo.files


def test_config_gives_what_is_left_of_the_budgets(git_repo):
    run = _run(git_repo, ["plan"], budget_tokens=1000, budget_cost_usd=2.0)
    run.input_tokens, run.output_tokens, run.cost_usd = 300, 100, 0.5
    cfg = stage_config_build(run, "plan")
    assert (cfg.budget_tokens, cfg.budget_cost_usd) == (600, pytest.approx(1.5))
    run.input_tokens = 900
    with pytest.raises(BudgetExceeded, match="^budget reached: 1,000 of 1,000 tokens$"):
        stage_config_build(run, "plan")


def test_a_stage_without_models_is_a_configuration_error(git_repo):
    run = _run(git_repo, ["plan"])
    with pytest.raises(ValueError, match="no models configured for stage 'research'"):
        stage_config_build(run, "research")
