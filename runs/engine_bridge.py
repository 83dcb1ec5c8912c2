"""The bridge between a stage's database side and the async engine running it.

The engine is async and Django's ORM refuses to run inside an event loop, so the engine
runs in a helper thread with its own loop (asyncio.run) and hands its events over a
queue.Queue; the calling thread records them in batches, heartbeats the stage while it
runs, and tells the engine to stop when the run was cancelled or the lease was lost.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.utils import timezone

from runs.models import Run, StageRun
from runs.tracing import stage_span, stage_span_outcome
from swarm.context import StageCancelled, StageConfig, StageInput, StageOutcome, StageWork
from swarm.debate import Completer, stage_run
from swarm.events import EngineEvent
from swarm.redact import redact
from swarm.repo import patch_check

logger = logging.getLogger("tekton.runs.engine_bridge")

_END = object()  # what the engine thread puts on the queue when it is done


class LeaseLost(Exception):
    """This executor no longer owns the stage (the sweeper or a resume took it back)."""


def stage_heartbeat(stage: StageRun, token: str) -> str:
    """Refresh the stage's heartbeat while this claim owns it. Returns 'ok', 'lost'
    (someone else owns the stage now) or 'cancelled' (the run was cancelled or failed)."""
    owned = StageRun.objects.filter(
        pk=stage.pk, status=StageRun.Status.RUNNING, claim=token
    ).update(heartbeat_at=timezone.now())
    if not owned:
        return "lost"
    status = Run.objects.filter(pk=stage.run_id).values_list("status", flat=True).first()
    if status is None or status in (Run.Status.CANCELLED, Run.Status.FAILED):
        return "cancelled"
    return "ok"


def _heartbeat_through_outages(stage: StageRun, token: str) -> str:
    """stage_heartbeat, with a lost database connection (a restart) taken as "try at the
    next beat": the engine goes on meanwhile. Were the database gone longer than the
    lease, the sweeper gives the stage to another attempt and the next beat says "lost"."""
    try:
        return stage_heartbeat(stage, token)
    except (OperationalError, InterfaceError) as exc:
        reason = redact((str(exc).strip().splitlines() or [type(exc).__name__])[0])
        logger.warning("stage %s: heartbeat missed, database unreachable: %s", stage.pk, reason)
        try:
            connection.close()  # reconnect at the next beat instead of reusing a dead one
        except DatabaseError:
            pass
        return "ok"


def engine_run(
    *,
    stage: StageRun,
    token: str,
    inp: StageInput,
    cfg: StageConfig,
    completer: Completer,
    record: Callable[[list[EngineEvent]], None],
    work: StageWork | None = None,
) -> StageOutcome:
    """Run the engine on one stage and return its outcome.

    `record` gets the engine's events in batches, in this thread, as they come; batches
    stop once the lease is lost (the new owner records its own). Raises LeaseLost,
    StageCancelled (the run stopped), or whatever the engine raised. The attempt is one
    span (runs.tracing.stage_span), parent of the engine's spans.
    """
    run = Run.objects.get(pk=stage.run_id)
    with stage_span(stage, run) as span:
        outcome = _engine_run(
            stage=stage,
            token=token,
            inp=inp,
            cfg=cfg,
            completer=completer,
            record=record,
            work=work,
        )
        stage_span_outcome(span, outcome)
    return outcome


def _engine_run(
    *,
    stage: StageRun,
    token: str,
    inp: StageInput,
    cfg: StageConfig,
    completer: Completer,
    record: Callable[[list[EngineEvent]], None],
    work: StageWork | None,
) -> StageOutcome:
    inbox: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    box: dict[str, Any] = {}

    def engine_thread() -> None:
        try:
            box["outcome"] = asyncio.run(
                stage_run(
                    inp,
                    cfg,
                    completer=completer,
                    emit=inbox.put,
                    is_cancelled=stop.is_set,
                    patch_check=patch_check,
                    work=work,
                )
            )
        except BaseException as exc:  # handed to the recording thread, which decides
            box["error"] = exc
        finally:
            inbox.put(_END)

    # The engine thread runs in a copy of this context: its spans are the stage span's.
    thread = threading.Thread(
        target=contextvars.copy_context().run,
        args=(engine_thread,),
        name=f"tekton-stage-{stage.pk}",
        daemon=True,
    )
    thread.start()
    every = float(settings.TEKTON_HEARTBEAT_SECONDS)
    last = time.monotonic()
    state = "ok"
    try:
        while True:
            wait = max(0.01, every - (time.monotonic() - last))
            try:
                item = inbox.get(timeout=wait)
            except queue.Empty:
                item = None
            batch: list[Any] = []
            while item is not None and item is not _END:
                batch.append(item)
                try:
                    item = inbox.get_nowait()
                except queue.Empty:
                    item = None
            if batch and state != "lost":
                record(batch)
            if item is _END:
                break
            if time.monotonic() - last >= every:
                last = time.monotonic()
                if state == "ok":
                    state = _heartbeat_through_outages(stage, token)
                    if state != "ok":
                        stop.set()  # the engine checks is_cancelled between calls
    except BaseException:
        stop.set()
        thread.join()
        raise
    thread.join()
    if state == "lost":
        raise LeaseLost(f"stage {stage.pk} was taken over")
    if state == "cancelled":
        raise StageCancelled("the run was stopped")
    if "error" in box:
        raise box["error"]
    return box["outcome"]
