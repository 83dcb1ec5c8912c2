"""The bridge between a stage's database side and the async engine running it.

The engine is async and Django's ORM refuses to run inside an event loop, so the engine
runs in a helper thread with its own loop (asyncio.run) and hands its events over a
queue.Queue; the calling thread records them in batches, heartbeats the stage while it
runs, and tells the engine to stop when the run was cancelled or the lease was lost.

The run's budgets go over the same queue: the engine's reservation (RunBudget.reserve)
is answered by the calling thread from the ledger (runs/budgets.py), and a settle is
handled after the events before it, so a call's usage is recorded before its
reservation is released.

Streamed text (AgentDelta) takes another way: it is coalesced and handed to `publish` in
the engine thread (swarm.deltas.DeltaRelay, every 50 ms at most), never recorded, so a
streamed piece does not wake the recording thread. Pending text goes out before the
engine hands over each event to store, so a call's deltas precede its stored message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.utils import timezone

from runs.budgets import budget_limits, budget_reserve, budget_settle
from runs.models import Run, StageRun
from runs.tracing import stage_span, stage_span_outcome
from swarm.context import (
    BudgetExceeded,
    StageCancelled,
    StageConfig,
    StageInput,
    StageOutcome,
    StageWork,
)
from swarm.debate import Completer, stage_run
from swarm.deltas import DeltaRelay
from swarm.events import EngineEvent
from swarm.redact import redact
from swarm.repo import patch_check
from tekton_site.db import connection_release, is_pooled, pool_timeout_reason

logger = logging.getLogger("tekton.runs.engine_bridge")

T = TypeVar("T")
# How long the stage thread keeps its connection after a write, for the next one.
RELEASE_IDLE_S = 0.02
# How long an event to store waits for the ones that follow it into the same transaction.
BATCH_LINGER_S = 0.02
_END = object()  # what the engine thread puts on the queue when it is done


class LeaseLost(Exception):
    """This executor no longer owns the stage (the sweeper or a resume took it back)."""


class _Reserve:
    def __init__(self, role: str, tokens: int, cost_usd: float) -> None:
        self.role, self.tokens, self.cost_usd = role, tokens, cost_usd
        self.answer: concurrent.futures.Future[int | None] = concurrent.futures.Future()


class _Settle:
    def __init__(self, ticket: int | None) -> None:
        self.ticket = ticket


class RunBudget:
    """swarm.budget.Budget over the run's ledger, for the engine thread: a reservation is
    asked of the recording thread (which owns the database connection) and awaited. A
    run with no limit when the stage started reserves nothing (a limit set later holds
    from the next stage on)."""

    def __init__(self, put: Callable[[Any], None], *, limited: bool, cost_capped: bool):
        self._put = put
        self.limited = limited
        self.cost_capped = cost_capped

    async def reserve(self, *, stage: str, role: str, tokens: int, cost_usd: float) -> int | None:
        if not self.limited:
            return None
        ask = _Reserve(role, tokens, cost_usd)
        self._put(ask)
        return await asyncio.wrap_future(ask.answer)

    def settle(self, ticket: Any, *, tokens: int, cost_usd: float) -> None:
        if ticket is not None:
            self._put(_Settle(ticket))


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
        busy = pool_timeout_reason(exc)
        reason = busy or redact((str(exc).strip().splitlines() or [type(exc).__name__])[0])
        why = "" if busy else "database unreachable: "
        logger.warning("stage %s: heartbeat missed, %s%s", stage.pk, why, reason)
        try:
            connection.close()  # reconnect at the next beat instead of reusing a dead one
        except DatabaseError:
            pass
        return "ok"


def _waiting_for_the_pool(write: Callable[[], T], stage: StageRun) -> T:
    """`write()` once this thread has a connection, waiting while this process's pool has
    none free (TEKTON_DB_POOL_TIMEOUT each try) for up to a lease: the database is up,
    only busy, so a batch or a reservation waits its turn instead of failing the stage and
    losing its events. A wait longer than a lease raises the pool's OperationalError."""
    deadline = time.monotonic() + float(settings.TEKTON_STAGE_LEASE_SECONDS)
    while connection.connection is None:
        try:
            connection.ensure_connection()
        except OperationalError as exc:
            reason = pool_timeout_reason(exc)
            if reason is None:
                break  # unreachable, not busy: write() meets it as before
            if time.monotonic() >= deadline:
                raise
            logger.warning("stage %s: waiting for a database connection: %s", stage.pk, reason)
    return write()


def connection_wait(stage: StageRun) -> None:
    """Take a connection of this process's pool before the stage's next queries, waiting
    while none is free (up to a lease), after the thread gave its own back for work
    without the database. Under load a query that met a busy pool failed the stage after
    TEKTON_DB_POOL_TIMEOUT and re-ran every call it had paid for (bench.concurrency at
    1,000 runs: 2 code stages, after their mediator had answered)."""
    _waiting_for_the_pool(lambda: None, stage)


def engine_run(
    *,
    stage: StageRun,
    token: str,
    inp: StageInput,
    cfg: StageConfig,
    completer: Completer,
    record: Callable[[list[EngineEvent]], None],
    work: StageWork | None = None,
    publish: Callable[[list[tuple[str, dict[str, Any]]]], None] | None = None,
    wanted: Callable[[], bool] | None = None,
) -> StageOutcome:
    """Run the engine on one stage and return its outcome.

    `record` gets the engine's events in batches, in this thread, as they come; batches
    stop once the lease is lost (the new owner records its own). `publish` gets the
    streamed text, coalesced (swarm.deltas payloads); None drops it. `wanted` says
    whether anyone follows it now (None: always). Raises LeaseLost,
    StageCancelled (the run stopped), or whatever the engine raised. The attempt is one
    span (runs.tracing.stage_span), parent of the engine's spans.
    """
    run = stage.run  # the claim's (execution sets it): read only when not in hand
    with stage_span(stage, run) as span:
        outcome = _engine_run(
            stage=stage,
            token=token,
            inp=inp,
            cfg=cfg,
            completer=completer,
            record=record,
            work=work,
            publish=publish,
            wanted=wanted,
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
    publish: Callable[[list[tuple[str, dict[str, Any]]]], None] | None = None,
    wanted: Callable[[], bool] | None = None,
) -> StageOutcome:
    inbox: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    box: dict[str, Any] = {}
    # The config the stage's budgets were checked against (stage_config_build).
    limit_tokens, limit_cost = budget_limits(stage.run.config)
    budget = RunBudget(
        inbox.put,
        limited=limit_tokens is not None or limit_cost is not None,
        cost_capped=limit_cost is not None,
    )

    # Published only while the stage is still this claim's: the recording thread sets
    # `stop` once the lease is lost or the run stopped.
    relay = DeltaRelay(inbox.put, publish, stop.is_set, wanted=wanted)

    def engine_thread() -> None:
        try:
            box["outcome"] = asyncio.run(
                stage_run(
                    inp,
                    cfg,
                    completer=completer,
                    emit=relay.emit,
                    is_cancelled=stop.is_set,
                    patch_check=patch_check,
                    work=work,
                    budget=budget,
                )
            )
        except BaseException as exc:  # handed to the recording thread, which decides
            box["error"] = exc
        finally:
            relay.close()
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
    pooled = is_pooled()
    used_at = time.monotonic()  # the reads above

    batch: list[Any] = []  # events to store, held up to BATCH_LINGER_S from the first
    first_at = 0.0

    def batch_record() -> None:
        nonlocal batch, used_at
        if batch and state != "lost":
            _waiting_for_the_pool(lambda b=batch: record(b), stage)
            used_at = time.monotonic()
        batch = []

    try:
        while True:
            wait = max(0.01, every - (time.monotonic() - last))
            if batch:
                wait = min(wait, max(0.001, BATCH_LINGER_S - (time.monotonic() - first_at)))
            if pooled and connection.connection is not None:
                # Nothing written for a moment: the engine waits on a provider, and the
                # connection goes back to the pool instead of idling through the call
                # (tekton_site.db). Kept through a burst of events (calls finishing
                # together, a run at latency 0), where taking it again would cost more.
                idle = time.monotonic() - used_at
                if idle >= RELEASE_IDLE_S:
                    connection_release()
                else:
                    wait = min(wait, RELEASE_IDLE_S - idle)
            try:
                item = inbox.get(timeout=wait)
            except queue.Empty:
                item = None
            while item is not None and item is not _END:
                if isinstance(item, _Reserve | _Settle):
                    # In order: the events before it (a settled call's usage) first.
                    batch_record()
                    _budget_answer(item, stage, token, lost=state == "lost")
                    used_at = time.monotonic()
                else:
                    if not batch:
                        first_at = time.monotonic()
                    batch.append(item)
                try:
                    item = inbox.get_nowait()
                except queue.Empty:
                    item = None
            # Calls that end together (a round's three debaters) are stored in one batch
            # (the writes per run stay as without streaming).
            if batch and (item is _END or time.monotonic() - first_at >= BATCH_LINGER_S):
                batch_record()
            if item is _END:
                break
            if time.monotonic() - last >= every:
                last = time.monotonic()
                if state == "ok":
                    state = _heartbeat_through_outages(stage, token)
                    used_at = time.monotonic()
                    if state != "ok":
                        stop.set()  # the engine checks is_cancelled between calls
    except BaseException:
        stop.set()
        _refuse_waiting(inbox, thread)
        raise
    thread.join()
    if state == "lost":
        raise LeaseLost(f"stage {stage.pk} was taken over")
    if state == "cancelled":
        raise StageCancelled("the run was stopped")
    if "error" in box:
        raise box["error"]
    return box["outcome"]


def _budget_answer(item: _Reserve | _Settle, stage: StageRun, token: str, *, lost: bool) -> None:
    if isinstance(item, _Settle):
        ticket = item.ticket
        _waiting_for_the_pool(lambda: budget_settle(ticket), stage)
        return
    if lost:
        item.answer.set_exception(StageCancelled("the stage was taken over"))
        return
    try:
        ticket = _waiting_for_the_pool(
            lambda: budget_reserve(
                run_id=stage.run_id,
                stage_run_id=stage.pk,
                claim=token,
                role=item.role,
                tokens=item.tokens,
                cost_usd=item.cost_usd,
            ),
            stage,
        )
    except BudgetExceeded as exc:
        item.answer.set_exception(exc)
    except Exception as exc:  # the engine raises it where it asked, like a failed call
        item.answer.set_exception(exc)
    else:
        item.answer.set_result(ticket)


def _refuse_waiting(inbox: queue.Queue[Any], thread: threading.Thread) -> None:
    """The recording thread is giving up: refuse any reservation the engine waits for,
    so the engine thread ends (its held rows go when the stage ends or is claimed)."""
    while thread.is_alive():
        try:
            item = inbox.get(timeout=0.05)
        except queue.Empty:
            continue
        if isinstance(item, _Reserve):
            item.answer.set_exception(StageCancelled("the stage stopped"))
    thread.join()
