"""Forks (runs.services.run_fork), the attempts a retry sets aside, and comparing a stage's
artifact across them (runs.compare)."""

from __future__ import annotations

import pytest

from runs.compare import patch_compare, stage_compare, stage_compare_options
from runs.models import Artifact, LlmCall, Run, RunEvent, StageAttempt, StageRun, TestRunRecord
from runs.services import fork_starts, run_create, run_fork, stage_retry
from tekton_site.errors import FieldError
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Call a service and run what it queued on commit (inline dispatch, synchronous)."""

    def _call(fn, **kw):
        with django_capture_on_commit_callbacks(execute=True):
            run = fn(**kw)
        run.refresh_from_db()
        return run

    return _call


@pytest.fixture
def parent(committed, fake_engine, git_repo, user, tekton_settings, tmp_path):
    """A succeeded run plan..review on git_repo whose code stage committed a change."""
    tekton_settings.TEKTON_WORKSPACE_ROOT = tmp_path / "workspaces"
    run = committed(
        run_create,
        goal="Add a note",
        repo_path=str(git_repo),
        stage_from="plan",
        stage_to="review",
        by=user,
    )
    assert run.status == "succeeded", run.reason
    TestRunRecord.objects.create(
        run=run, stage="code", kind="stage", repo_path=run.repo_path, commit=run.base_commit,
        command_key="k", data={"exit_code": 0},
    )  # fmt: skip
    fake_engine.calls.clear()
    return run


def stages(run):
    return dict(StageRun.objects.filter(run=run).values_list("stage", "status"))


def test_a_fork_reuses_the_parents_finished_stages_and_runs_from_its_stage(
    parent, committed, fake_engine, user
):
    fork = committed(
        run_fork, parent=parent, from_stage="review", model="offline/other-model", by=user
    )

    assert fork.status == "succeeded", fork.reason
    assert (fork.parent_id, fork.forked_from_stage) == (parent.pk, "review")
    assert (fork.base_commit, fork.repo_path, fork.goal) == (
        parent.base_commit,
        parent.repo_path,
        parent.goal,
    )
    assert fork.base_commit  # a real commit, the parent's
    # Only review ran again, with the new model, from the parent's code artifact.
    assert fake_engine.stages_called() == ["review"]
    inp, cfg = fake_engine.calls[0]
    assert set(cfg.models.values()) == {"offline/other-model"}
    parent_code = Artifact.objects.get(run=parent, stage="code", kind="json")
    assert inp.prior_artifacts["code"] == parent_code.content
    assert stages(fork) == {
        "plan": "skipped",
        "research": "skipped",
        "plan_update": "skipped",
        "code": "skipped",
        "review": "succeeded",
    }
    reused = StageRun.objects.get(run=fork, stage="code")
    assert reused.reason == f"reused from run {parent.pk}"
    assert reused.confidence == StageRun.objects.get(run=parent, stage="code").confidence
    # The artifacts before review are copies (same bytes, the fork's own rows); the patch
    # too, so the workspace is rebuilt with the parent's change; the branch is the parent's.
    for stage, kind in [("plan", "json"), ("plan_update", "json"), ("code", "patch")]:
        mine = Artifact.objects.get(run=fork, stage=stage, kind=kind)
        theirs = Artifact.objects.get(run=parent, stage=stage, kind=kind)
        assert mine.pk != theirs.pk and mine.sha256 == theirs.sha256
    assert (fork.branch, fork.head_commit) == (parent.branch, parent.head_commit)
    assert parent.branch
    # Calls, tokens and cost of the reused stages stay the parent's.
    assert set(LlmCall.objects.filter(run=fork).values_list("stage", flat=True)) == {"review"}
    assert StageRun.objects.get(run=fork, stage="plan").input_tokens == 0
    copied = TestRunRecord.objects.get(run=fork, stage="code")
    assert copied.reused and copied.data == {"exit_code": 0}
    event = RunEvent.objects.get(run=fork, kind="run.forked")
    assert event.payload["parent"] == parent.pk
    assert event.payload["reused"] == ["plan", "research", "plan_update", "code"]
    # The parent is as it was.
    parent.refresh_from_db()
    assert parent.status == "succeeded" and list(parent.forks.all()) == [fork]


def test_a_fork_before_code_gets_its_own_branch_and_the_parents_config(
    parent, committed, fake_engine, user
):
    fork = committed(run_fork, parent=parent, from_stage="code", by=user)
    assert fork.status == "succeeded", fork.reason
    assert fake_engine.stages_called() == ["code", "review"]
    assert fork.branch and fork.branch != parent.branch
    assert fork.head_commit != parent.head_commit
    assert fork.config["models"] == parent.config["models"]
    assert fork.profile_name == parent.profile_name


@pytest.mark.parametrize(
    ("from_stage", "text"),
    [
        ("deploy", "unknown stage 'deploy'"),
        ("release", "covers plan to review; release is not one of its stages"),
    ],
)
def test_fork_rejects_a_stage_the_parent_does_not_have(from_stage, text):
    parent = RunFactory(status=Run.Status.SUCCEEDED, stage_to="review")
    before = Run.objects.count()
    with pytest.raises(FieldError) as err:
        run_fork(parent=parent, from_stage=from_stage)
    assert err.value.field == "from_stage" and text in str(err.value)
    assert Run.objects.count() == before


def test_fork_starts_at_most_at_the_parents_first_unfinished_stage(
    committed, fake_engine, git_repo, user
):
    fake_engine.behaviour = {("research", 1): "block"}
    blocked = committed(
        run_create, goal="g", repo_path=str(git_repo), stage_from="plan", stage_to="code", by=user
    )
    assert blocked.status == "blocked"
    assert fork_starts(list(blocked.stages.all())) == ["plan", "research"]
    with pytest.raises(FieldError, match="stage research of run .* is blocked") as err:
        run_fork(parent=blocked, from_stage="plan_update")
    assert err.value.field == "from_stage"
    # The blocked stage itself is a fine start: the parent still waits, the fork goes on.
    fork = committed(run_fork, parent=blocked, from_stage="research", by=user)
    assert fork.status == "blocked"  # the fake engine blocks research's first attempt again
    assert stages(fork)["plan"] == "skipped"
    assert Run.objects.get(pk=blocked.pk).status == "blocked"


def test_fork_of_a_running_parent_and_bad_overrides(git_repo, committed, user):
    running = RunFactory(
        repo_path=str(git_repo), status=Run.Status.RUNNING, stage_from="plan", stage_to="research"
    )
    StageRun.objects.filter(run=running, stage="plan").update(status="succeeded")
    StageRun.objects.filter(run=running, stage="research").update(status="running")
    with pytest.raises(FieldError) as err:
        run_fork(parent=running, from_stage="research", model="not-a-model")
    assert err.value.field == "model"
    with pytest.raises(FieldError) as err:
        run_fork(parent=running, from_stage="research", profile_name="nope")
    assert err.value.field == "profile"
    fork = run_fork(parent=running, from_stage="research", dispatch=False)
    assert fork.status == "queued" and stages(fork) == {"plan": "skipped", "research": "queued"}


def test_a_retry_keeps_the_attempt_it_sets_aside_and_compare_shows_the_change(
    committed, fake_engine, git_repo, user
):
    fake_engine.behaviour = {"plan": lambda inp, cfg: None if inp.note else "block"}
    run = committed(
        run_create, goal="g", repo_path=str(git_repo), stage_from="plan", stage_to="plan", by=user
    )
    row = StageRun.objects.get(run=run, stage="plan")
    draft = {**row.draft["artifact"], "summary": "the first draft"}
    StageRun.objects.filter(pk=row.pk).update(draft={"artifact": draft, "patch": None})
    assert stage_compare_options(user, run, "plan") == []

    run = committed(stage_retry, run=run, stage="plan", note="shorter", by=user)

    assert run.status == "succeeded"
    kept = StageAttempt.objects.get(run=run, stage="plan")
    assert (kept.number, kept.status, kept.artifact) == (1, "blocked", draft)
    assert kept.reason.startswith("weighted approval")
    current = Artifact.objects.get(run=run, stage="plan", kind="json").content
    assert current["summary"] == "plan for g"  # the accepted artifact is the new attempt's
    assert [o.key for o in stage_compare_options(user, run, "plan")] == ["attempt-1"]
    diff = stage_compare(user, run, "plan", "attempt-1").diff
    assert diff.startswith("--- a/plan.json\n+++ b/plan.json\n")
    assert '-  "summary": "the first draft"' in diff
    assert '+  "summary": "plan for g"' in diff
    assert stage_compare(user, run, "plan", "attempt-7") is None


def test_compare_across_parent_and_fork_sees_only_visible_runs(
    parent, committed, user, django_user_model
):
    fork = committed(run_fork, parent=parent, from_stage="review", by=user)
    Artifact.objects.filter(run=fork, stage="review", kind="json").update(
        content={"summary": "another review"}
    )
    assert [o.key for o in stage_compare_options(user, fork, "review")] == [f"run-{parent.pk}"]
    assert [o.key for o in stage_compare_options(user, parent, "review")] == [f"run-{fork.pk}"]
    diff = stage_compare(user, parent, "review", f"run-{fork.pk}").diff
    assert '-  "summary": "another review"' in diff
    # A reused stage is the same on both sides.
    assert stage_compare(user, fork, "plan", f"run-{parent.pk}").diff == ""
    stranger = django_user_model.objects.create_user("eve", password="pw")
    assert stage_compare_options(stranger, fork, "review") == []


def test_a_resume_keeps_the_failed_attempt_and_a_stage_that_never_ran_keeps_nothing(
    committed, fake_engine, git_repo, user
):
    from runs.services import run_resume
    from swarm.providers.base import ProviderError

    fake_engine.behaviour = {"research": ProviderError("down")}
    run = committed(
        run_create, goal="g", repo_path=str(git_repo), stage_from="plan", stage_to="plan_update"
    )
    assert run.status == "failed"
    fake_engine.behaviour = {}
    run = committed(run_resume, run=run)
    assert run.status == "succeeded"
    kept = list(StageAttempt.objects.filter(run=run).values_list("stage", "number", "status"))
    assert kept == [("research", 1, "failed")]  # plan_update had not started


def test_a_patch_that_does_not_parse_is_compared_as_plain_lines():
    broken = "--- a/a.py\n+++ b/a.py\n@@ -1,5 +1,5 @@\n-x = 1\n+x = 2\n"  # hunk too short
    good = "--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 3\n"

    [file] = patch_compare(broken, good, "diff.patch")

    assert (file.path, file.change) == ("diff.patch", "differs")
    assert "-@@ -1,5 +1,5 @@\n+@@ -1 +1 @@\n" in file.diff and "-+x = 2\n++x = 3\n" in file.diff
    assert patch_compare(broken, broken, "diff.patch") == ()
