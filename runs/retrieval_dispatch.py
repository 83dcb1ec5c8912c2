"""When retrieval's work happens (issue 10): the events receiver that, once events commit,
indexes a run's base commit when it starts and writes the lessons events teach, on a
Celery task in services mode and in a background thread in embedded mode. The work
itself is runs/retrieval.py; nothing here waits for it."""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from runs.models import RunEvent

# runs.retrieval (and with it swarm.retrieval, the indexer and the vector store) is
# imported only when work is dispatched: runs.apps connects this module's receiver in
# every process, the read commands of the CLI included.

logger = logging.getLogger("tekton.runs.retrieval_dispatch")


def _in_background(target, *args: Any, name: str) -> None:
    """Celery in services mode is the caller's business; here: a daemon thread that closes
    its own database connection (embedded), or the caller's thread when threads are off."""

    def body() -> None:
        try:
            target(*args)
        except Exception:
            logger.exception("%s failed", name)
        finally:
            connection.close()

    if settings.TEKTON_INLINE_THREADS:
        threading.Thread(target=body, name=name, daemon=True).start()
    else:
        target(*args)


def run_index_dispatch(run_id: int) -> None:
    """Index the run's base commit unless it is indexed, without making anyone wait: a
    Celery task in services mode, a background thread in embedded mode."""
    if not settings.TEKTON_RETRIEVAL:
        return
    if settings.TEKTON_EXECUTION == "celery":
        import tekton_site.celery  # noqa: F401  the configured app
        from runs.tasks import run_index_task

        run_index_task.apply_async(args=[run_id], queue=settings.TEKTON_QUEUE)
        return
    from runs.retrieval import run_index_ensure

    _in_background(run_index_ensure, run_id, name=f"tekton-index-run-{run_id}")


LESSON_EVENT_KINDS = (
    "stage.blocked",
    "stage.approved",
    "stage.retried",
    "run.cancelled",
    "stage.finished",
)


def events_lessons_queue(sender, events: list[RunEvent], **kwargs: Any) -> None:
    """events_recorded receiver: once the events commit, write the lessons they carry and
    index a run's base commit when it starts."""
    if not settings.TEKTON_RETRIEVAL:
        return
    for event in events:
        if event.kind == "run.started":
            transaction.on_commit(lambda run_id=event.run_id: run_index_dispatch(run_id))
        elif event.kind in LESSON_EVENT_KINDS and (
            event.kind != "stage.finished" or event.stage in ("review", "test_debug")
        ):  # only review's and test_debug's artifacts teach something when a stage passes
            transaction.on_commit(lambda pk=event.pk: lesson_dispatch(pk))


def lesson_dispatch(event_id: int) -> None:
    if settings.TEKTON_EXECUTION == "celery":
        import tekton_site.celery  # noqa: F401
        from runs.tasks import lesson_write_task

        lesson_write_task.apply_async(args=[event_id], queue=settings.TEKTON_QUEUE)
        return
    from runs.retrieval import lesson_write

    _in_background(lesson_write, event_id, name=f"tekton-lesson-{event_id}")
