"""runs.lifecycle: readiness, advancing, failing and finishing a run."""

from __future__ import annotations

import pytest
from django.db import transaction

from runs.lifecycle import run_advance, run_fail, stage_artifacts_write, stages_ready
from runs.models import Artifact, Run, RunEvent, StageRun
from tests.factories import RunFactory, frozen_config

pytestmark = pytest.mark.django_db


def _run(repo, stages):
    return RunFactory(
        repo_path=str(repo), stage_from=stages[0], stage_to=stages[-1], config=frozen_config(stages)
    )


def _ids(run, *names):
    return [StageRun.objects.get(run=run, stage=n).pk for n in names]


def _finish(run, *names):
    StageRun.objects.filter(run=run, stage__in=names).update(status=StageRun.Status.SUCCEEDED)


def test_review_and_threat_become_ready_together_and_integrate_waits_for_both(git_repo):
    run = _run(git_repo, ["code", "review", "threat", "integrate"])
    assert stages_ready(run_id=run.pk) == _ids(run, "code")
    _finish(run, "code")
    with transaction.atomic():
        assert sorted(run_advance(run_id=run.pk, after_stage="code")) == sorted(
            _ids(run, "review", "threat")
        )
    _finish(run, "review")
    assert run_advance(run_id=run.pk, after_stage="review") == []  # threat still open
    _finish(run, "threat")
    assert run_advance(run_id=run.pk, after_stage="threat") == _ids(run, "integrate")


def test_the_last_stage_finishes_the_run_with_a_summary_once(git_repo):
    run = _run(git_repo, ["plan"])
    _finish(run, "plan")
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    with transaction.atomic():
        assert run_advance(run_id=run.pk) == []
        assert run_advance(run_id=run.pk) == []  # a second finisher writes nothing
    run.refresh_from_db()
    assert run.status == "succeeded" and run.reason == "all 1 stages finished"
    summary = Artifact.objects.get(run=run, kind=Artifact.Kind.SUMMARY)
    assert summary.content["stages"][0]["stage"] == "plan"
    assert list(RunEvent.objects.filter(run=run).values_list("kind", flat=True)) == [
        "artifact.created",
        "run.finished",
    ]


def test_failing_is_idempotent_and_redacts_the_reason(git_repo):
    run = _run(git_repo, ["plan"])
    assert run_fail(run_id=run.pk, reason="key sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123 refused")
    assert not run_fail(run_id=run.pk, reason="again")
    run.refresh_from_db()
    assert run.status == "failed" and "sk-ant" not in run.reason
    assert RunEvent.objects.filter(run=run, kind="run.failed").count() == 1
    assert stages_ready(run_id=run.pk) == []  # nothing is ready in a failed run


def test_a_stages_artifacts_are_written_once(git_repo):
    run = _run(git_repo, ["code"])
    patch = "--- /dev/null\n+++ b/a.md\n@@ -0,0 +1 @@\n+a\n"
    assert stage_artifacts_write(run=run, stage="code", artifact={"x": 1}, patch=patch) == [
        "code.json",
        "diff.patch",
    ]
    stage_artifacts_write(run=run, stage="code", artifact={"x": 2}, patch=patch + "+b\n")
    assert Artifact.objects.get(run=run, kind=Artifact.Kind.JSON).content == {"x": 1}
    assert RunEvent.objects.filter(run=run, kind="artifact.created").count() == 2


def test_the_summary_says_what_answered_each_stage_not_what_was_asked(git_repo, monkeypatch):
    from runs.dispatch import run_inline
    from runs.services import run_create

    monkeypatch.setenv("TEKTON_LLM_BACKEND", "auto")  # no key set: auto answers offline
    run = run_create(goal="g", repo_path=git_repo, stage_to="research", dispatch=False)
    assert run.config["llm_backend"] == "auto"
    run_inline(run.pk)
    summary = Artifact.objects.get(run=run, kind=Artifact.Kind.SUMMARY).content
    assert summary["offline"] is True
    assert set(summary["answered_by"]) == {"offline"}
    assert [(s["stage"], s["offline"], set(s["answered_by"])) for s in summary["stages"]] == [
        ("plan", True, {"offline"}),
        ("research", True, {"offline"}),
    ]


def test_the_summary_names_the_backend_per_stage_when_a_real_one_answered_some():
    from runs.lifecycle import run_summary
    from tests.factories import LlmCallFactory

    run = RunFactory(
        stage_from="plan", stage_to="research", config=frozen_config(["plan", "research"])
    )
    for provider in ("anthropic", "anthropic", "openai"):
        LlmCallFactory(run=run, stage="plan", provider=provider)
    LlmCallFactory(run=run, stage="plan", provider="offline", error="timed out")  # no answer
    LlmCallFactory(run=run, stage="research", provider="offline")
    summary = run_summary(run)
    assert summary["offline"] is False
    assert summary["answered_by"] == {"anthropic": 2, "offline": 1, "openai": 1}
    assert [(s["stage"], s["offline"], s["answered_by"]) for s in summary["stages"]] == [
        ("plan", False, {"anthropic": 2, "openai": 1}),
        ("research", True, {"offline": 1}),
    ]
