from __future__ import annotations

import threading
import time

import pytest
from django.db import transaction

import tekton_site.celery  # noqa: F401  the app the task proxies resolve against, as dispatch loads it
from runs.dispatch import run_inline, stages_dispatch
from runs.models import Run, StageRun
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def test_celery_mode_queues_one_task_per_stage_on_commit(
    settings, mocker, django_capture_on_commit_callbacks
):
    settings.TEKTON_EXECUTION = "celery"
    settings.TEKTON_QUEUE = "tekton-test"
    apply_async = mocker.patch("runs.tasks.stage_execute_task.apply_async")
    run = RunFactory(stage_from="review", stage_to="threat")
    ids = list(run.stages.values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            stages_dispatch(ids + ids[:1])
            apply_async.assert_not_called()  # a worker must never look for uncommitted rows
    assert [c.kwargs for c in apply_async.call_args_list] == [
        {"args": [ids[0]], "queue": "tekton-test"},
        {"args": [ids[1]], "queue": "tekton-test"},
    ]


def test_empty_dispatch_does_nothing(mocker, django_capture_on_commit_callbacks):
    inline = mocker.patch("runs.dispatch.run_inline")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        stages_dispatch([])
    assert callbacks == [] and not inline.called


def test_inline_synchronous_mode_runs_the_whole_run(
    git_repo, fake_engine, django_capture_on_commit_callbacks
):
    run = RunFactory(repo_path=str(git_repo), stage_from="code", stage_to="integrate")
    with django_capture_on_commit_callbacks(execute=True):
        stages_dispatch([run.stages.get(stage="code").pk])
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert sorted(fake_engine.stages_called()) == ["code", "integrate", "review", "threat"]


def test_run_inline_stops_when_the_run_blocks(git_repo, fake_engine):
    fake_engine.behaviour = {"review": "block"}
    run = RunFactory(repo_path=str(git_repo), stage_from="code", stage_to="integrate")
    run_inline(run.pk)
    run.refresh_from_db()
    assert run.status == "blocked"
    statuses = dict(run.stages.values_list("stage", "status"))
    assert statuses["review"] == "blocked" and statuses["integrate"] == "queued"


@pytest.mark.django_db(transaction=True)
def test_threaded_mode_runs_review_and_threat_side_by_side(git_repo, fake_engine, settings):
    settings.TEKTON_INLINE_THREADS = True
    both = threading.Barrier(2)

    def meet(inp, cfg):
        # Only passes when review and threat are in flight at the same time.
        both.wait(timeout=10)
        return None

    fake_engine.behaviour = {"review": meet, "threat": meet}

    run = RunFactory(repo_path=str(git_repo), stage_from="code", stage_to="integrate")
    stages_dispatch([run.stages.get(stage="code").pk])  # no transaction: runs now, in a thread
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.is_finished or run.status == Run.Status.BLOCKED:
            break
        time.sleep(0.05)
    assert run.status == "succeeded", run.reason
    assert (
        list(StageRun.objects.filter(run=run).values_list("status", flat=True)) == ["succeeded"] * 4
    )
    assert sorted(fake_engine.stages_called()) == ["code", "integrate", "review", "threat"]


def test_running_inline_does_not_load_celery(tmp_path):
    """Embedded `tekton run` and the web process execute stages in-process; importing
    the dispatcher must not pay for Celery."""
    from tests.support.imports import modules_loaded_by

    loaded = modules_loaded_by(
        "import runs.dispatch", ("celery", "kombu", "runs.tasks"), data_dir=tmp_path
    )
    assert loaded == []
