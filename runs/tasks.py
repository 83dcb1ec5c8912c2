"""Celery tasks: ids in, safe to run twice (the claim in execution makes a redelivery a no-op)."""

from __future__ import annotations

from celery import shared_task

from runs.dispatch import stages_dispatch
from runs.execution import stage_execute


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def stage_execute_task(stage_run_id: int) -> None:
    """Run one stage (see execution.stage_execute), then dispatch what became ready."""
    hostname = getattr(stage_execute_task.request, "hostname", None) or ""
    stages_dispatch(stage_execute(stage_run_id=int(stage_run_id), worker=hostname))


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_index_task(run_id: int) -> None:
    """Index a run's base commit unless it is indexed (see retrieval.run_index_ensure)."""
    from runs.retrieval import run_index_ensure

    run_index_ensure(int(run_id))


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def lesson_write_task(event_id: int) -> None:
    """Store the lesson an event teaches (see retrieval.lesson_write); keyed by the event."""
    from runs.retrieval import lesson_write

    lesson_write(int(event_id))
