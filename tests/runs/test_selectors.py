from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from runs.events import event_record
from runs.models import Run
from runs.selectors import run_detail, run_events_after, run_get, runs_visible_to
from tests.factories import ArtifactFactory, RunFactory

pytestmark = pytest.mark.django_db


def test_users_see_their_own_runs_staff_and_cli_see_all(user, staff_user):
    mine = RunFactory(owner=user, with_stages=False)
    theirs = RunFactory(owner=staff_user, with_stages=False)
    assert list(runs_visible_to(user)) == [mine]
    assert set(runs_visible_to(staff_user)) == {mine, theirs}
    assert set(runs_visible_to(None)) == {mine, theirs}
    assert list(runs_visible_to(AnonymousUser())) == []


def test_run_get_raises_for_unknown_id():
    with pytest.raises(Run.DoesNotExist):
        run_get(424242)


def test_events_after_a_seq_in_order_with_limit():
    run = RunFactory(with_stages=False)
    for i in range(5):
        event_record(run_id=run.pk, kind="stage.progress", payload={"i": i})
    other = RunFactory(with_stages=False)
    event_record(run_id=other.pk, kind="run.started")
    assert [e.seq for e in run_events_after(run.pk, 2)] == [3, 4, 5]
    assert [e.payload["i"] for e in run_events_after(run.pk, 0, limit=2)] == [0, 1]
    assert run_events_after(run.pk, 5) == []


def test_run_detail_prefetches_stages_and_artifacts(django_assert_num_queries):
    run = RunFactory(stage_from="plan", stage_to="research")
    ArtifactFactory(run=run, stage="plan")
    with django_assert_num_queries(3):
        detail = run_detail(run.pk)
        assert [s.stage for s in detail.stages.all()] == ["plan", "research"]
        assert [a.name for a in detail.artifacts.all()] == ["plan.json"]


# --- the command line's reads ---------------------------------------------------------


def test_run_status_and_a_running_stage():
    from runs.models import StageRun
    from runs.selectors import run_has_stage_running, run_status

    run = RunFactory(stage_from="plan", stage_to="research", status=Run.Status.RUNNING)
    assert run_status(run.pk) == "running"
    assert not run_has_stage_running(run.pk)
    run.stages.filter(stage="plan").update(status=StageRun.Status.RUNNING)
    assert run_has_stage_running(run.pk)
    assert run_status(424242) is None


def test_run_blocked_at_names_the_blocked_stage_and_its_reason():
    from runs.models import StageRun
    from runs.selectors import run_blocked_at

    run = RunFactory(status=Run.Status.BLOCKED, reason="the run's own reason")
    assert run_blocked_at(run) == (None, "the run's own reason")
    run.stages.filter(stage="review").update(
        status=StageRun.Status.BLOCKED, reason="quorum 0.40 < 0.67"
    )
    assert run_blocked_at(run) == ("review", "quorum 0.40 < 0.67")


def test_runs_with_progress_counts_finished_stages_newest_first():
    from runs.models import StageRun
    from runs.selectors import runs_with_progress

    old = RunFactory(stage_from="plan", stage_to="code", status=Run.Status.SUCCEEDED)
    new = RunFactory(stage_from="plan", stage_to="research", status=Run.Status.FAILED)
    old.stages.filter(stage="plan").update(status=StageRun.Status.SUCCEEDED)
    old.stages.filter(stage="research").update(status=StageRun.Status.SKIPPED)
    old.stages.filter(stage="plan_update").update(status=StageRun.Status.FAILED)
    rows = list(runs_with_progress(None))
    assert [(r.pk, r.stages_done, r.stages_total) for r in rows] == [
        (new.pk, 0, 2),
        (old.pk, 2, 4),
    ]
    assert [r.pk for r in runs_with_progress(None, status="succeeded")] == [old.pk]
