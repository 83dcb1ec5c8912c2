from __future__ import annotations

import threading

import pytest

import tekton_site.celery  # noqa: F401  (the app a worker loads: the tasks bind to it)
from runs.models import Run, StageRun
from runs.tasks import stage_execute_task
from tekton_site.sweeper import sweeper_loop
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def test_stage_task_runs_the_stage_and_dispatches_the_next(
    git_repo, fake_engine, settings, mocker, django_capture_on_commit_callbacks
):
    settings.TEKTON_EXECUTION = "celery"
    apply_async = mocker.patch("runs.tasks.stage_execute_task.apply_async")
    run = RunFactory(repo_path=str(git_repo), stage_from="plan", stage_to="research")
    plan = run.stages.get(stage="plan")
    with django_capture_on_commit_callbacks(execute=True):
        stage_execute_task(plan.pk)  # the task function, called directly
    plan.refresh_from_db()
    assert plan.status == "succeeded"
    research = run.stages.get(stage="research")
    apply_async.assert_called_once_with(args=[research.pk], queue=settings.TEKTON_QUEUE)


def test_stage_task_delivered_twice_is_a_noop(
    git_repo, fake_engine, settings, mocker, django_capture_on_commit_callbacks
):
    settings.TEKTON_EXECUTION = "celery"
    apply_async = mocker.patch("runs.tasks.stage_execute_task.apply_async")
    run = RunFactory(repo_path=str(git_repo), stage_from="plan", stage_to="plan")
    plan = run.stages.get(stage="plan")
    with django_capture_on_commit_callbacks(execute=True):
        stage_execute_task(plan.pk)
        stage_execute_task(plan.pk)
        stage_execute_task(999999)  # a deleted stage
    assert len(fake_engine.calls) == 1
    apply_async.assert_not_called()
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED


def test_stage_task_requeues_itself_after_a_provider_error(
    git_repo, fake_engine, settings, mocker, django_capture_on_commit_callbacks
):
    from swarm.providers.base import ProviderTimeout

    settings.TEKTON_EXECUTION = "celery"
    apply_async = mocker.patch("runs.tasks.stage_execute_task.apply_async")
    fake_engine.behaviour = {("plan", 1): ProviderTimeout("no answer in 120 s")}
    run = RunFactory(repo_path=str(git_repo), stage_from="plan", stage_to="plan")
    plan = run.stages.get(stage="plan")
    with django_capture_on_commit_callbacks(execute=True):
        stage_execute_task(plan.pk)
    apply_async.assert_called_once_with(args=[plan.pk], queue=settings.TEKTON_QUEUE)
    plan.refresh_from_db()
    assert (plan.status, plan.attempt) == (StageRun.Status.QUEUED, 1)
    assert "ProviderTimeout: no answer in 120 s" in plan.reason


def test_worker_sweeper_loop_sweeps_and_survives_errors(mocker):
    stop = threading.Event()
    calls = []

    def sweep():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        if len(calls) == 3:
            stop.set()
        return 0

    mocker.patch("runs.services.runs_requeue_stale", side_effect=sweep)
    thread = threading.Thread(target=sweeper_loop, args=(stop, 0.01))
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(calls) == 3
