from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from runs.artifacts_store import artifact_path
from runs.models import Artifact, Run, RunEvent, StageRun
from runs.services import (
    run_abort,
    run_cancel,
    run_create,
    run_plan,
    run_resume,
    runs_requeue_stale,
    stage_approve,
    stage_retry,
)
from swarm.providers.base import ProviderError
from tekton_site.errors import FieldError, StateError
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def create(git_repo, django_capture_on_commit_callbacks, user):
    """run_create with dispatch executed (inline, synchronous) like a real commit would."""

    def _create(**kw):
        kw.setdefault("goal", "Add a /health endpoint")
        kw.setdefault("repo_path", str(git_repo))
        kw.setdefault("by", user)
        with django_capture_on_commit_callbacks(execute=True):
            run = run_create(**kw)
        run.refresh_from_db()
        return run

    return _create


def committed(fn, callbacks, **kw):
    with callbacks(execute=True):
        run = fn(**kw)
    run.refresh_from_db()
    return run


def stage_of(run, name):
    return StageRun.objects.get(run=run, stage=name)


# --- run_plan ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"goal": "   "}, "goal", "empty"),
        ({"goal": "x" * 8001}, "goal", "8,001 characters"),
        ({"stage_from": "deploy"}, "stage_from", "unknown stage 'deploy'"),
        ({"stage_to": "ship"}, "stage_to", "unknown stage 'ship'"),
        ({"stage_from": "review", "stage_to": "plan"}, "stage_to", "comes before"),
        ({"profile_name": "nope"}, "profile", "unknown profile 'nope'"),
        ({"consensus_free": ["deploy"]}, "consensus_free", "deploy"),
        ({"model": "not-a-model-id"}, "model", "vendor/model"),
    ],
)
def test_plan_rejects_bad_input(git_repo, kwargs, field, text):
    args = {"goal": "Add a health endpoint", "repo_path": str(git_repo), **kwargs}
    with pytest.raises(FieldError) as err:
        run_plan(**args)
    assert err.value.field == field
    assert text in str(err.value)
    assert Run.objects.count() == 0


def test_plan_rejects_missing_outside_and_non_git_repositories(git_repo, tmp_path, settings):
    with pytest.raises(FieldError, match="does not exist") as err:
        run_plan(goal="g", repo_path=str(git_repo / "missing"))
    assert err.value.field == "repo_path"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(FieldError, match="outside the allowed roots") as err:
        run_plan(goal="g", repo_path=str(outside))
    assert str(settings.TEKTON_REPO_ROOTS[0]) in str(err.value)
    plain = settings.TEKTON_REPO_ROOTS[0] / "plain"
    plain.mkdir()
    with pytest.raises(FieldError, match="not a git repository"):
        run_plan(goal="g", repo_path=str(plain))


def test_plan_resolves_symlinks_before_checking_roots(git_repo, tmp_path):
    link = tmp_path / "sneaky"
    link.symlink_to(git_repo)
    assert run_plan(goal="g", repo_path=str(link)).repo_path == str(git_repo.resolve())
    (git_repo / "escape").symlink_to(tmp_path)
    with pytest.raises(FieldError, match="outside"):
        run_plan(goal="g", repo_path=str(git_repo / "escape"))


def test_plan_explain_lists_stages_roles_and_consensus(git_repo):
    plan = run_plan(
        goal="g",
        repo_path=str(git_repo),
        stage_from="code",
        stage_to="integrate",
        consensus_free=["code"],
    )
    info = plan.explain()
    assert [s["stage"] for s in info["stages"]] == ["code", "review", "threat", "integrate"]
    by_name = {s["stage"]: s for s in info["stages"]}
    assert by_name["integrate"]["depends_on"] == ["review", "threat"]
    assert by_name["code"]["depends_on"] == []
    assert by_name["code"]["consensus_free"] is True
    assert set(by_name["review"]["roles"]) == {"proponent", "skeptic", "pragmatist", "mediator"}
    assert by_name["review"]["roles"]["skeptic"]["backend"] == "offline"
    assert info["rounds"] == plan.config["rounds"]
    assert Run.objects.count() == 0


def _priced_profile(monkeypatch, name, **fields):
    """Opus everywhere but the plan proponent, answered by Anthropic (a key is set)."""
    from config_profiles.models import Profile

    monkeypatch.setenv("TEKTON_LLM_BACKEND", "auto")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    models = {
        "default": "anthropic/claude-opus-4.1",
        "stages": {"plan": {"proponent": "openai/gpt-4o"}},
    }
    return Profile.objects.create(name=name, stage_models=models, **fields)


def test_explain_says_which_stages_stagger_their_opening_round(git_repo, monkeypatch):
    _priced_profile(monkeypatch, "priced")
    info = run_plan(
        goal="g",
        repo_path=str(git_repo),
        profile_name="priced",
        stage_to="code",
        consensus_free=["code"],
    ).explain()
    assert info["cache_stagger"] is True
    staggered = {s["stage"]: s["staggered_opening"] for s in info["stages"]}
    # plan: two models among its debaters; code: consensus-free, no debate.
    assert staggered == {"plan": False, "research": True, "plan_update": True, "code": False}
    assert info["cache_stagger_note"] == (
        "opening round staggered for the prompt cache: +1 call of latency per debate "
        "stage (research, plan_update)"
    )


def test_explain_with_cache_stagger_off_staggers_nothing(git_repo, monkeypatch):
    _priced_profile(monkeypatch, "eager", cache_stagger=False)
    info = run_plan(goal="g", repo_path=str(git_repo), profile_name="eager").explain()
    assert info["cache_stagger"] is False
    assert not any(s["staggered_opening"] for s in info["stages"])
    assert "cache_stagger off" in info["cache_stagger_note"]


def test_explain_offline_staggers_nothing_as_nothing_is_saved(git_repo):
    info = run_plan(goal="g", repo_path=str(git_repo), stage_to="research").explain()
    assert info["cache_stagger"] is True  # the profile's setting, though nothing applies
    assert not any(s["staggered_opening"] for s in info["stages"])
    assert (
        "no debate stage has its three debaters on one priced model" in (info["cache_stagger_note"])
    )


def test_a_run_launched_with_cache_stagger_off_keeps_it_in_its_config(git_repo, fake_engine):
    from config_profiles.models import Profile
    from runs.stage_inputs import stage_config_build

    Profile.objects.create(
        name="eager", stage_models={"default": "offline/echo"}, cache_stagger=False
    )
    run = run_create(
        goal="g", repo_path=str(git_repo), profile_name="eager", stage_to="plan", dispatch=False
    )
    assert run.config["cache_stagger"] is False
    assert stage_config_build(run, "plan").cache_stagger is False
    default = run_create(goal="g", repo_path=str(git_repo), stage_to="plan", dispatch=False)
    assert default.config["cache_stagger"] is True
    assert stage_config_build(default, "plan").cache_stagger is True


# --- create / lifecycle --------------------------------------------------------------------
def test_create_makes_stages_and_runs_to_success(create, fake_engine, user, tmp_path):
    run = create(stage_from="plan", stage_to="research", output_dir=str(tmp_path / "new" / "out"))
    assert run.status == "succeeded"
    assert run.owner == user
    assert run.config["stages"] == ["plan", "research"]
    assert [s.status for s in run.stages.all()] == ["succeeded", "succeeded"]
    assert (tmp_path / "new" / "out" / "diamond_summary.json").exists()


def test_create_without_dispatch_leaves_everything_queued(git_repo, fake_engine):
    run = run_create(goal="g", repo_path=str(git_repo), dispatch=False)
    assert run.status == "queued"
    assert list(run.stages.values_list("stage", "status")) == [
        (s, "queued") for s in run.config["stages"]
    ]
    assert fake_engine.calls == []


def test_blocked_then_approve_continues_to_success(
    create, fake_engine, django_capture_on_commit_callbacks, user
):
    fake_engine.behaviour = {("plan", 1): "block"}
    run = create(stage_from="plan", stage_to="research")
    assert run.status == "blocked"
    assert stage_of(run, "research").status == "queued"
    run = committed(
        stage_approve, django_capture_on_commit_callbacks, run=run, stage="plan", by=user
    )
    assert run.status == "succeeded"
    plan = stage_of(run, "plan")
    assert plan.status == "succeeded" and plan.approved_by == user
    art = Artifact.objects.get(run=run, stage="plan", kind="json")
    assert json.loads(artifact_path(art).read_text())["summary"].startswith("plan for")
    assert fake_engine.stages_called() == ["plan", "research"]  # plan was not run again
    assert "stage.approved" in RunEvent.objects.filter(run=run).values_list("kind", flat=True)


def test_approve_without_draft_artifact_skips_the_stage(
    create, fake_engine, django_capture_on_commit_callbacks, user
):
    fake_engine.behaviour = {("plan", 1): "block"}
    run = create(stage_from="plan", stage_to="research")
    StageRun.objects.filter(run=run, stage="plan").update(draft={"artifact": None, "patch": None})
    run = committed(
        stage_approve, django_capture_on_commit_callbacks, run=run, stage="plan", by=user
    )
    plan = stage_of(run, "plan")
    assert plan.status == "skipped"
    assert plan.reason == "approved without artifact by ada"
    assert run.status == "succeeded"


def test_approve_rejects_a_stage_that_is_not_blocked(create, fake_engine):
    run = create(stage_from="plan", stage_to="plan")
    with pytest.raises(StateError, match="succeeded"):
        stage_approve(run=run, stage="plan")
    with pytest.raises(FieldError, match="unknown stage"):
        stage_approve(run=run, stage="nope")


def test_retry_with_note_reaches_the_engine(
    create, fake_engine, django_capture_on_commit_callbacks, user
):
    fake_engine.behaviour = {("plan", 1): lambda inp, cfg: "block" if not inp.note else None}
    run = create(stage_from="plan", stage_to="research")
    assert run.status == "blocked"
    run = committed(
        stage_retry,
        django_capture_on_commit_callbacks,
        run=run,
        stage="plan",
        note="Keep it to one file",
        by=user,
    )
    assert run.status == "succeeded"
    retried_input = fake_engine.calls[1][0]
    assert (retried_input.stage, retried_input.note, retried_input.attempt) == (
        "plan",
        "Keep it to one file",
        1,
    )
    event = RunEvent.objects.get(run=run, kind="stage.retried")
    assert event.payload["note"] == "Keep it to one file"


def test_retry_of_a_failed_stage_requeues_the_run(
    create, fake_engine, django_capture_on_commit_callbacks
):
    fake_engine.behaviour = {"plan": ProviderError("boom")}
    run = create(stage_from="plan", stage_to="research")
    assert run.status == "failed"
    fake_engine.behaviour = {}
    run = committed(stage_retry, django_capture_on_commit_callbacks, run=run, stage="plan", note="")
    assert run.status == "succeeded"
    assert stage_of(run, "plan").attempt == 1


def test_abort_cancels_a_blocked_run(create, fake_engine, user):
    fake_engine.behaviour = {("plan", 1): "block"}
    run = create(stage_from="plan", stage_to="research")
    run = run_abort(run=run, by=user)
    assert run.status == "cancelled"
    assert run.reason == "aborted by ada at blocked stage plan"
    assert {s.status for s in run.stages.all()} == {"cancelled"}
    last = RunEvent.objects.filter(run=run).last()
    assert (last.kind, last.payload["status"]) == ("run.cancelled", "cancelled")
    with pytest.raises(StateError, match="only a blocked run"):
        run_abort(run=run)


def test_cancel_queued_run_and_refuse_finished_one(git_repo, fake_engine, user):
    run = run_create(goal="g", repo_path=str(git_repo), dispatch=False)
    run = run_cancel(run=run, by=user)
    assert run.status == "cancelled" and run.reason == "cancelled by ada"
    assert set(run.stages.values_list("status", flat=True)) == {"cancelled"}
    assert RunEvent.objects.filter(run=run, kind="run.cancelled").count() == 1
    with pytest.raises(StateError, match="already cancelled"):
        run_cancel(run=run)


def test_resume_reuses_finished_stages(create, fake_engine, django_capture_on_commit_callbacks):
    fake_engine.behaviour = {"research": ProviderError("down")}
    run = create(stage_from="plan", stage_to="plan_update")
    assert run.status == "failed"
    plan_artifact = Artifact.objects.get(run=run, stage="plan")
    fake_engine.behaviour = {}
    fake_engine.calls.clear()
    run = committed(run_resume, django_capture_on_commit_callbacks, run=run)
    assert run.status == "succeeded"
    assert fake_engine.stages_called() == ["research", "plan_update"]
    assert Artifact.objects.filter(run=run, stage="plan").count() == 1
    assert Artifact.objects.get(run=run, stage="plan").sha256 == plan_artifact.sha256
    assert stage_of(run, "research").attempt == 1
    resumed = RunEvent.objects.get(run=run, kind="run.resumed")
    assert resumed.payload["from_stage"] == "research"
    with pytest.raises(StateError, match="succeeded"):
        run_resume(run=run)


# --- sweeper -----------------------------------------------------------------------------------
def test_sweeper_requeues_stale_running_stage_and_fails_one_at_max_attempts(settings, mocker):
    dispatch = mocker.patch("runs.services.stages_dispatch")
    now = timezone.now()
    stale_at = now - timedelta(seconds=settings.TEKTON_STAGE_LEASE_SECONDS + 5)
    live = RunFactory(status=Run.Status.RUNNING, stage_from="plan", stage_to="plan")
    StageRun.objects.filter(run=live).update(
        status="running", attempt=1, heartbeat_at=now, claim="a"
    )
    lost = RunFactory(status=Run.Status.RUNNING, stage_from="plan", stage_to="plan")
    StageRun.objects.filter(run=lost).update(
        status="running", attempt=1, heartbeat_at=stale_at, claim="b"
    )
    dead = RunFactory(status=Run.Status.RUNNING, stage_from="plan", stage_to="plan")
    StageRun.objects.filter(run=dead).update(
        status="running", attempt=3, heartbeat_at=stale_at, claim="c"
    )

    assert runs_requeue_stale(now=now) == 1
    assert stage_of(live, "plan").status == "running"
    lost_stage = stage_of(lost, "plan")
    assert (lost_stage.status, lost_stage.attempt, lost_stage.claim) == ("queued", 1, "")
    dispatch.assert_called_once_with([lost_stage.pk])
    dead.refresh_from_db()
    assert stage_of(dead, "plan").status == "failed"
    assert (dead.status, dead.reason) == ("failed", "stage plan failed: worker lost 3 times")
    assert RunEvent.objects.filter(run=dead, kind="run.failed").count() == 1
    # A second sweep (or a second sweeper) changes nothing more.
    dispatch.reset_mock()
    assert runs_requeue_stale(now=now) == 0
    dispatch.assert_not_called()


def test_sweeper_redispatches_a_lost_dispatch(settings, mocker):
    dispatch = mocker.patch("runs.services.stages_dispatch")
    now = timezone.now()
    run = RunFactory(status=Run.Status.RUNNING, stage_from="plan", stage_to="research")
    old = now - timedelta(seconds=settings.TEKTON_STAGE_LEASE_SECONDS + 5)
    StageRun.objects.filter(run=run).update(updated_at=old)
    assert runs_requeue_stale(now=now) == 1
    dispatch.assert_called_once_with([stage_of(run, "plan").pk])  # research is not ready


def test_an_orphaned_running_run_resumes_under_the_lease_rule(
    git_repo, settings, django_capture_on_commit_callbacks
):
    run = run_create(goal="g", repo_path=git_repo, stage_to="research", dispatch=False)
    plan = StageRun.objects.get(run=run, stage="plan")
    # The process that ran it died mid-stage (embedded mode: no worker sweeps for it).
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    StageRun.objects.filter(pk=plan.pk).update(
        status=StageRun.Status.RUNNING, attempt=1, claim="dead", heartbeat_at=timezone.now()
    )
    with pytest.raises(StateError, match="stage plan is alive"):
        run_resume(run=run)
    StageRun.objects.filter(pk=plan.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.TEKTON_STAGE_LEASE_SECONDS + 1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        run_resume(run=run)  # dispatched on commit, run inline here
    run.refresh_from_db()
    assert run.status == "succeeded"
    plan.refresh_from_db()
    assert plan.attempt == 2  # the orphaned attempt counts
    kinds = list(RunEvent.objects.filter(run=run).values_list("kind", flat=True))
    assert "stage.retried" in kinds and "run.resumed" in kinds
