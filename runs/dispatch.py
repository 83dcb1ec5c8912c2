"""How a stage gets run: a Celery task (services mode) or in this process (embedded mode).

Dispatch always happens on commit, so a worker never looks for a row the caller has not
committed yet. Claims make every path safe to run twice.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connection, transaction

from runs.execution import stage_execute
from runs.lifecycle import stages_ready
from runs.models import StageRun

logger = logging.getLogger("tekton.runs.dispatch")

# More than any run could need: nine stages x three attempts, with room for re-claims.
_MAX_ROUNDS = 200


def stages_dispatch(stage_run_ids: list[int]) -> None:
    """Queue stages for execution once the current transaction commits (now, outside one).

    celery mode: one `stage_execute_task` message per id on TEKTON_QUEUE. inline mode:
    the stages' runs go on in this process, in a background thread when
    TEKTON_INLINE_THREADS is true, else synchronously in the caller's thread.
    """
    ids = [int(i) for i in dict.fromkeys(stage_run_ids)]
    if not ids:
        return
    transaction.on_commit(lambda: _dispatch_now(ids))


def _dispatch_now(ids: list[int]) -> None:
    if settings.TEKTON_EXECUTION == "celery":
        # Celery only where stages go to workers: inline (embedded `tekton run`, the
        # web process) never loads it, nor the configured app.
        import tekton_site.celery  # noqa: F401
        from runs.tasks import stage_execute_task

        for stage_run_id in ids:
            stage_execute_task.apply_async(args=[stage_run_id], queue=settings.TEKTON_QUEUE)
        return
    run_ids = list(
        dict.fromkeys(
            StageRun.objects.filter(pk__in=ids).order_by("run_id").values_list("run_id", flat=True)
        )
    )
    if settings.TEKTON_INLINE_THREADS:
        thread = threading.Thread(
            target=_inline_thread,
            args=(run_ids,),
            name=f"tekton-runs-{'-'.join(map(str, run_ids))}",
            daemon=True,
        )
        thread.start()
    else:
        for run_id in run_ids:
            run_inline(run_id)


def _inline_thread(run_ids: list[int]) -> None:
    try:
        for run_id in run_ids:
            run_inline(run_id)
    except Exception:
        logger.exception("inline execution of runs %s stopped", run_ids)
    finally:
        connection.close()  # this thread opened it; nobody else will


def _execute_closing(stage_run_id: int) -> list[int]:
    try:
        return stage_execute(
            stage_run_id=stage_run_id, worker=f"inline:{threading.current_thread().name}"
        )
    finally:
        connection.close()


def run_inline(run_id: int) -> None:
    """Execute every ready stage of a run in this thread until nothing is ready (the run
    finished, blocked, failed or was cancelled). Stages ready together (review and threat)
    run in a small thread pool, unless threads are off or the caller holds an open
    transaction (other threads could not see its rows)."""
    for _ in range(_MAX_ROUNDS):
        ready = stages_ready(run_id=run_id)
        if not ready:
            return
        parallel = (
            len(ready) > 1 and settings.TEKTON_INLINE_THREADS and not connection.in_atomic_block
        )
        if parallel:
            with ThreadPoolExecutor(
                max_workers=len(ready), thread_name_prefix=f"tekton-run-{run_id}"
            ) as pool:
                list(pool.map(_execute_closing, ready))
        else:
            for stage_run_id in ready:
                stage_execute(stage_run_id=stage_run_id, worker="inline")
    logger.error("run %s: stopped running inline after %s rounds", run_id, _MAX_ROUNDS)
