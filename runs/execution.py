"""Run one stage: claim it, run the engine over its input, write its outcome, say what is
next.

`stage_execute` is the whole contract. It never dispatches (dispatch and tasks do), so
services -> dispatch -> tasks -> execution never loops back. The flow, module by module:
stage_inputs (what the stage starts from) -> engine_bridge (the engine in its thread,
heartbeats, cancellation) -> recorder (its events as rows) -> the outcome writes here ->
lifecycle (advance the run, or fail it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from runs import events
from runs.budgets import budget_limits, budget_release_stage
from runs.engine_bridge import LeaseLost, connection_wait, engine_run
from runs.lifecycle import ACTIVE_RUN, ready_ids, run_advance, run_fail, stage_artifacts_write
from runs.models import Run, StageRun
from runs.recorder import StageRecorder, jsonable
from runs.retrieval import stage_context_build, stage_context_record
from runs.stage_inputs import (
    completer_build,
    stage_config_build,
    stage_input_build,
    stage_prior_artifacts,
)
from runs.stage_work import RunStageWork, StageWorkBlocked, stage_work_build
from swarm.context import BudgetExceeded, StageCancelled, StageOutcome
from swarm.providers.base import NoRouteError, ProviderAuthError, ProviderBadRequest
from swarm.redact import redact
from swarm.workspace import WorkspaceError
from tekton_site.db import connection_release, pool_timeout_reason

logger = logging.getLogger("tekton.runs.execution")

REASON_MAX = 500


def one_line(exc: BaseException) -> str:
    """A short, redacted, single-line reason for an exception: never a traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    line = redact(line)
    return line if len(line) <= REASON_MAX else line[: REASON_MAX - 1] + "…"


T = TypeVar("T")
DB_RETRY_PAUSE_S = 0.5


def _db_retry(write: Callable[[], T]) -> T:
    """`write()`, one of the outcome transactions below, tried again after a lost database
    connection (a restart, a failover) until it goes through or a lease has passed, so a
    live worker records its stage itself instead of leaving it for the sweeper as if it
    had died. Each transaction is guarded by the stage's claim: a try that committed
    before its answer was lost makes the next one a LeaseLost, never a second write."""
    deadline = time.monotonic() + float(settings.TEKTON_STAGE_LEASE_SECONDS)
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() >= deadline:
                raise
            busy = pool_timeout_reason(exc)
            if busy:
                logger.warning("waiting for a database connection: %s", busy)
            else:
                logger.warning("database unreachable, trying again: %s", one_line(exc))
            try:
                connection.close()  # a dropped connection is never reused; the next opens anew
            except DatabaseError:
                pass
            time.sleep(DB_RETRY_PAUSE_S)


def _from_counts(recorder: StageRecorder, write: Callable[[], T]) -> Callable[[], T]:
    """`write` starting each try from the recorder's token counts as they are now: a try
    that rolled back must not leave its top-up counted in memory only."""
    counts = (recorder.input_tokens, recorder.output_tokens, recorder.cost_usd)

    def again() -> T:
        recorder.input_tokens, recorder.output_tokens, recorder.cost_usd = counts
        return write()

    return again


# --- claim ---------------------------------------------------------------------------------
def _claim(stage_run_id: int, worker: str) -> tuple[StageRun, str] | None:
    run_id = StageRun.objects.filter(pk=stage_run_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return None  # deleted
    with transaction.atomic(), events.events_deferred():
        # Lock order everywhere: the run row, then stage rows (no deadlock on PostgreSQL).
        run = Run.objects.select_for_update().get(pk=run_id)
        stage = StageRun.objects.filter(pk=stage_run_id).first()
        if stage is None or stage.status != StageRun.Status.QUEUED:
            return None  # gone, or a second delivery of a stage someone already claimed
        if run.status not in ACTIVE_RUN or stage.pk not in ready_ids(run):
            return None
        max_attempts = settings.TEKTON_STAGE_MAX_ATTEMPTS
        if stage.attempt >= max_attempts:
            reason = f"stage {stage.stage} gave up after {stage.attempt} attempts"
            if StageRun.objects.filter(
                pk=stage.pk, status=StageRun.Status.QUEUED, attempt=stage.attempt
            ).update(
                updated_at=timezone.now(),
                status=StageRun.Status.FAILED,
                reason=reason,
                finished_at=timezone.now(),
            ):
                run_fail(run_id=run.pk, reason=reason)
            return None
        token = uuid.uuid4().hex
        now = timezone.now()
        claimed = StageRun.objects.filter(
            pk=stage.pk, status=StageRun.Status.QUEUED, attempt=stage.attempt
        ).update(
            updated_at=now,
            status=StageRun.Status.RUNNING,
            attempt=F("attempt") + 1,
            heartbeat_at=now,
            started_at=now,
            finished_at=None,
            worker=worker[:200],
            claim=token,
        )
        if claimed != 1:
            return None
        # What an earlier attempt's calls still hold (its worker died): nobody owns it now.
        budget_release_stage(stage_run_id=stage.pk)
        # The run row is locked and read: update it only where it changes (the first claim).
        if run.started_at is None and Run.objects.filter(pk=run.pk, started_at__isnull=True).update(
            started_at=now
        ):
            events.event_record(
                run_id=run.pk,
                kind="run.started",
                payload={
                    "stages": list((run.config or {}).get("stages") or []),
                    "profile": run.profile_name,
                },
            )
        if run.status == Run.Status.QUEUED:
            Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
                status=Run.Status.RUNNING
            )
            run.status = Run.Status.RUNNING
        run.started_at = run.started_at or now
        # The claim's UPDATE matched the row as read (status, attempt) under the run's
        # lock: what it wrote is what the row now holds, so no read back.
        stage.status, stage.attempt = StageRun.Status.RUNNING, stage.attempt + 1
        stage.updated_at = stage.heartbeat_at = stage.started_at = now
        stage.finished_at, stage.worker, stage.claim = None, worker[:200], token
        events.event_record(
            run_id=run.pk,
            kind="stage.started",
            stage=stage.stage,
            payload={"attempt": stage.attempt},
        )
    stage.run = run  # the run as read under its lock: the engine starts from it
    return stage, token


# --- the engine ----------------------------------------------------------------------------
def _engine(stage: StageRun, token: str, recorder: StageRecorder) -> StageOutcome:
    run = stage.run  # read (locked) by the claim that just committed
    cfg = stage_config_build(run, stage.stage)
    # A worktree to prepare (git) and context to retrieve (embeddings, Milvus) take a
    # while without the database: the connection waits in the pool meanwhile.
    connection_release()
    try:
        work = stage_work_build(run, stage)
    except StageWorkBlocked as exc:
        return StageOutcome(status="blocked", reason=str(exc), artifact=None)
    # What retrieval found is recorded before the engine starts, so the run page shows
    # why an agent knew something even while the stage is still debating.
    connection_wait(stage)
    prior = stage_prior_artifacts(run, stage.stage)
    connection_release()
    context = stage_context_build(run, stage.stage, prior)
    connection_wait(stage)
    stage_context_record(run_id=run.pk, stage=stage.stage, context=context)
    outcome = engine_run(
        stage=stage,
        token=token,
        inp=stage_input_build(run, stage, work=work, context=context, prior=prior),
        cfg=cfg,
        completer=completer_build(run.config or {}),
        record=recorder.record,
        work=work,
        publish=recorder.deltas_publish,
        wanted=recorder.deltas_wanted,
    )
    connection_wait(stage)  # the engine's waits gave the thread's connection back
    if work is not None:
        work.records_write()
    if stage.stage == "code" and work is not None:
        outcome = _code_commit(run, stage, work, outcome)
    return outcome


def _code_commit(
    run: Run, stage: StageRun, work: RunStageWork, outcome: StageOutcome
) -> StageOutcome:
    """A code stage that passed: its change committed on the run's branch, and the facts
    (branch, base, head, the diff's sha256) in its artifact. One that ends blocked leaves
    no branch behind that points at an earlier attempt's change."""
    if outcome.status != "succeeded" or not (outcome.patch or "").strip():
        if outcome.status != "succeeded":
            _branch_drop(run, work)
        return outcome
    connection_release()  # git takes a while; others need the connection meanwhile
    try:
        facts = work.commit(outcome.patch)
    except WorkspaceError as exc:
        connection_wait(stage)
        _branch_drop(run, work)
        return dataclasses.replace(
            outcome, status="blocked", reason=f"the change cannot be committed: {exc}"
        )
    connection_wait(stage)
    Run.objects.filter(pk=run.pk).update(branch=facts["branch"], head_commit=facts["head"])
    return dataclasses.replace(outcome, artifact={**(outcome.artifact or {}), "workspace": facts})


def _branch_drop(run: Run, work: RunStageWork) -> None:
    try:
        work.workspace.branch_delete()
    except WorkspaceError as exc:
        logger.warning("run %s: branch not deleted: %s", run.pk, exc)
    Run.objects.filter(pk=run.pk).update(branch="", head_commit="")


# --- recording the result --------------------------------------------------------------------
def _owned(stage_run_id: int, token: str) -> StageRun:
    stage = StageRun.objects.select_for_update().get(pk=stage_run_id)
    if stage.status != StageRun.Status.RUNNING or stage.claim != token:
        raise LeaseLost(f"stage {stage_run_id} was taken over")
    return stage


def _lock_run(run_id: int) -> Run:
    return Run.objects.select_for_update().get(pk=run_id)


def _outcome_fields(outcome: StageOutcome) -> dict[str, Any]:
    return {
        "confidence": outcome.confidence,
        "approval": outcome.approval,
        "votes": redact(jsonable(list(outcome.votes))),
        "mediator": redact(jsonable(dict(outcome.mediator or {}))),
        "checks": redact(jsonable(list(outcome.checks or []))),
        "reason": redact(outcome.reason or "")[:4000],
    }


def _float(value: float | None) -> float | None:
    # What the FloatField column gives back: an engine's 1 reads as 1.0.
    return None if value is None else float(value)


def _record_success(
    stage_run_id: int, token: str, outcome: StageOutcome, recorder: StageRecorder
) -> list[int]:
    with transaction.atomic(), events.events_deferred():
        run = _lock_run(recorder.stage.run_id)
        stage = _owned(stage_run_id, token)
        recorder.outcome_topup(outcome)
        stage_artifacts_write(
            run=run, stage=stage.stage, artifact=outcome.artifact, patch=outcome.patch
        )
        now = timezone.now()
        fields = _outcome_fields(outcome)
        StageRun.objects.filter(pk=stage.pk).update(
            status=StageRun.Status.SUCCEEDED,
            finished_at=now,
            heartbeat_at=now,
            draft=None,
            **fields,
        )
        # The row is locked and was just read (_owned): what the UPDATE wrote is in hand.
        stage.finished_at = now
        events.event_record(
            run_id=run.pk,
            kind="stage.finished",
            stage=stage.stage,
            payload={
                "status": StageRun.Status.SUCCEEDED,
                "confidence": _float(fields["confidence"]),
                "approval": _float(fields["approval"]),
                "duration_s": stage.duration_s,
                "attempt": stage.attempt,
            },
        )
        return run_advance(run_id=run.pk, after_stage=stage.stage, run=run)


def _record_blocked(
    stage_run_id: int, token: str, outcome: StageOutcome, recorder: StageRecorder
) -> None:
    with transaction.atomic(), events.events_deferred():
        run = _lock_run(recorder.stage.run_id)
        stage = _owned(stage_run_id, token)
        recorder.outcome_topup(outcome)
        now = timezone.now()
        fields = _outcome_fields(outcome)
        StageRun.objects.filter(pk=stage.pk).update(
            status=StageRun.Status.BLOCKED,
            finished_at=now,
            heartbeat_at=now,
            draft=redact({"artifact": outcome.artifact, "patch": outcome.patch}),
            **fields,
        )
        Run.objects.filter(pk=run.pk, status__in=ACTIVE_RUN).update(
            status=Run.Status.BLOCKED,
            reason=f"stage {stage.stage} blocked: {fields['reason']}"[:4000],
        )
        events.event_record(
            run_id=run.pk,
            kind="stage.blocked",
            stage=stage.stage,
            payload={
                "reason": fields["reason"],
                "confidence": outcome.confidence,
                "approval": outcome.approval,
                "attempt": stage.attempt,
                "budget": outcome.budget_reached,
            },
        )
        if outcome.budget_reached:
            # What notifications (webhooks, e-mail) subscribe to; the run waits for a raise.
            run.refresh_from_db()
            config = run.config or {}
            events.event_record(
                run_id=run.pk,
                kind="budget.reached",
                stage=stage.stage,
                payload={
                    "reason": fields["reason"],
                    "budget_tokens": int(config.get("budget_tokens") or 0),
                    "budget_cost_usd": float(config.get("budget_cost_usd") or 0),
                    "spent_tokens": run.total_tokens,
                    "spent_cost_usd": float(run.cost_usd),
                },
            )


def _record_stop(
    stage_run_id: int, token: str, run_id: int, *, status: str, reason: str, fail_run: str | None
) -> None:
    with transaction.atomic():
        _lock_run(run_id)
        stage = _owned(stage_run_id, token)
        stage.finished_at = timezone.now()  # the row is locked: what it holds after this
        StageRun.objects.filter(pk=stage.pk).update(
            status=status, reason=reason, finished_at=stage.finished_at
        )
        events.event_record(
            run_id=run_id,
            kind="stage.finished",
            stage=stage.stage,
            payload={
                "status": status,
                "reason": reason,
                "confidence": None,
                "approval": None,
                "duration_s": stage.duration_s,
                "attempt": stage.attempt,
            },
        )
        if fail_run:
            run_fail(run_id=run_id, reason=fail_run)


def _request_error(exc: BaseException) -> bool:
    """A provider refused the request itself (a wrong key, a request it cannot take, no
    route): another attempt would send the same and be refused the same, so the stage
    fails now with the reason, and a person fixes it and resumes."""
    return isinstance(exc, ProviderAuthError | ProviderBadRequest | NoRouteError)


def _record_error(stage_run_id: int, token: str, run_id: int, exc: BaseException) -> list[int]:
    reason = one_line(exc)
    with transaction.atomic():
        run = _lock_run(run_id)
        stage = _owned(stage_run_id, token)
        if run.status in (Run.Status.CANCELLED, Run.Status.FAILED):
            StageRun.objects.filter(pk=stage.pk).update(
                status=StageRun.Status.CANCELLED,
                reason=f"run {run.status}",
                finished_at=timezone.now(),
            )
            return []
        if stage.attempt < settings.TEKTON_STAGE_MAX_ATTEMPTS and not _request_error(exc):
            StageRun.objects.filter(pk=stage.pk).update(
                updated_at=timezone.now(),
                status=StageRun.Status.QUEUED,
                reason=f"attempt {stage.attempt} failed: {reason}",
                claim="",
                heartbeat_at=None,
            )
            events.event_record(
                run_id=run_id,
                kind="stage.retried",
                stage=stage.stage,
                payload={"reason": reason, "attempt": stage.attempt, "automatic": True},
            )
            return [stage.pk]
    tries = "1 attempt" if stage.attempt == 1 else f"{stage.attempt} attempts"
    _record_stop(
        stage_run_id,
        token,
        run_id,
        status=StageRun.Status.FAILED,
        reason=reason,
        fail_run=f"stage {stage.stage} failed after {tries}: {reason}",
    )
    return []


def stage_execute(*, stage_run_id: int, worker: str = "") -> list[int]:
    """Claim and run one stage; returns the ids of stages that should run next.

    Idempotent: a second delivery, a stage that is not queued, not ready (dependencies
    unfinished) or whose run is not queued/running is a no-op returning []. Outcomes:
    succeeded -> artifacts written once, the next ready stages returned (or the run
    finished with diamond_summary.json); blocked -> the stage and run block, nothing next;
    the run's budget reached (before or during the stage) -> the stage and run block too,
    "budget reached: ...", until a person raises the budget and retries; a provider
    refusing the request (401, 400/422, no route) -> stage and run fail at once; any other
    error -> [own id] while attempts remain (TEKTON_STAGE_MAX_ATTEMPTS), then stage and run
    fail with a one-line reason; a cancelled run -> the stage is cancelled. Never raises
    for engine failures; an outcome is written again through a database outage of up to a
    lease (_db_retry).
    """
    claimed = _claim(stage_run_id, worker)
    if claimed is None:
        return []
    stage, token = claimed
    # Calls reserve budget only under a limit, read from the config the claim read
    # (engine_bridge.RunBudget): with none, the attempt leaves nothing to release.
    reserving = any(limit is not None for limit in budget_limits(stage.run.config))
    recorder = StageRecorder(stage)
    try:
        try:
            outcome = _engine(stage, token, recorder)
        except StageCancelled:
            _db_retry(
                lambda: _record_stop(
                    stage_run_id,
                    token,
                    stage.run_id,
                    status=StageRun.Status.CANCELLED,
                    reason="run cancelled",
                    fail_run=None,
                )
            )
            return []
        except BudgetExceeded as exc:
            blocked = StageOutcome(
                status="blocked", reason=str(exc), artifact=None, budget_reached=True
            )
            _db_retry(lambda: _record_blocked(stage_run_id, token, blocked, recorder))
            return []
        except LeaseLost:
            raise
        except Exception as exc:
            logger.error(
                "run %s / %s attempt %s failed",
                stage.run_id,
                stage.stage,
                stage.attempt,
                exc_info=True,
            )
            error = exc
            return _db_retry(lambda: _record_error(stage_run_id, token, stage.run_id, error))
        if outcome.status == "succeeded":
            return _db_retry(
                _from_counts(
                    recorder, lambda: _record_success(stage_run_id, token, outcome, recorder)
                )
            )
        _db_retry(
            _from_counts(recorder, lambda: _record_blocked(stage_run_id, token, outcome, recorder))
        )
        return []
    except LeaseLost:
        logger.warning(
            "run %s / %s: lease lost, leaving the stage to its new owner", stage.run_id, stage.stage
        )
        return []
    finally:
        if reserving:
            budget_release_stage(stage_run_id=stage_run_id, claim=token)
