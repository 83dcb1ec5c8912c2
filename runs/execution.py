"""Run one stage: claim it, run the swarm engine, record what happened, say what is next.

`stage_execute` is the whole contract; it never dispatches (dispatch and tasks do), so
services -> dispatch -> tasks -> execution never loops back.

The engine is async and Django's ORM refuses to run inside an event loop, so the engine
runs in a helper thread with its own loop (asyncio.run) and hands its events over a
queue.Queue; this thread records them, heartbeats the stage and watches for a cancel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from runs import events
from runs.artifacts_store import artifact_read_json, artifact_write
from runs.lessons import HistoryLessons
from runs.models import Artifact, LlmCall, Run, StageRun
from swarm.context import (
    BudgetExceeded,
    RepoFacts,
    StageCancelled,
    StageConfig,
    StageInput,
    StageOutcome,
)
from swarm.debate import stage_run
from swarm.events import AgentMessage, EngineEvent, LlmCallDone
from swarm.providers.router import router_build
from swarm.redact import redact
from swarm.repo import patch_check, repo_facts
from swarm.stages import PATCH_FILE, SUMMARY_FILE, stage_dependencies, stage_get, stage_predecessors

logger = logging.getLogger("tekton.runs.execution")

DONE_STATUSES = (StageRun.Status.SUCCEEDED, StageRun.Status.SKIPPED)
ACTIVE_RUN = (Run.Status.QUEUED, Run.Status.RUNNING)
_END = object()  # sentinel the engine thread puts on the queue when it is done
REASON_MAX = 500


class LeaseLost(Exception):
    """This executor no longer owns the stage (the sweeper or a resume took it back)."""


def one_line(exc: BaseException) -> str:
    """A short, redacted, single-line reason for an exception: never a traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    line = redact(line)
    return line if len(line) <= REASON_MAX else line[: REASON_MAX - 1] + "…"


def _dec(value: float | Decimal | None) -> Decimal:
    return Decimal(str(round(float(value or 0), 6)))


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --- readiness -----------------------------------------------------------------------------
def _is_sequential(run: Run) -> bool:
    # "schedule": "sequential" replays the predecessor's schedule (every call and every
    # stage one after another); benchmarks compare against it.
    return (run.config or {}).get("schedule") == "sequential"


def _ready_ids(run: Run) -> list[int]:
    rows = list(StageRun.objects.filter(run_id=run.pk).values("id", "stage", "status"))
    status = {r["stage"]: r["status"] for r in rows}
    selected = [r["stage"] for r in rows]
    return [
        r["id"]
        for r in rows
        if r["status"] == StageRun.Status.QUEUED
        and all(
            status[d] in DONE_STATUSES
            for d in stage_dependencies(r["stage"], selected, sequential=_is_sequential(run))
        )
    ]


def stages_ready(*, run_id: int) -> list[int]:
    """Queued stages of an active (queued/running) run whose dependencies are done."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None or run.status not in ACTIVE_RUN:
        return []
    return _ready_ids(run)


def run_fail(*, run_id: int, reason: str) -> bool:
    """Mark an unfinished run failed with `reason` and record run.failed. Idempotent."""
    reason = redact(reason)
    updated = Run.objects.filter(
        pk=run_id, status__in=(Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.BLOCKED)
    ).update(status=Run.Status.FAILED, reason=reason, finished_at=timezone.now())
    if updated:
        events.event_record(
            run_id=run_id, kind="run.failed", payload={"status": "failed", "reason": reason}
        )
    return bool(updated)


def run_summary(run: Run) -> dict[str, Any]:
    """diamond_summary.json: every stage's outcome and the run's totals."""
    names: dict[str, list[str]] = {}
    for a in Artifact.objects.filter(run=run).exclude(kind=Artifact.Kind.SUMMARY):
        names.setdefault(a.stage, []).append(a.name)
    stages = []
    for s in StageRun.objects.filter(run=run).order_by("position"):
        stages.append(
            {
                "stage": s.stage,
                "position": s.position,
                "status": s.status,
                "attempt": s.attempt,
                "confidence": s.confidence,
                "approval": s.approval,
                "votes": s.votes,
                "reason": s.reason,
                "artifacts": names.get(s.stage, []),
                "input_tokens": s.input_tokens,
                "output_tokens": s.output_tokens,
                "cost_usd": float(s.cost_usd),
                "duration_s": s.duration_s,
            }
        )
    return {
        "run_id": run.pk,
        "goal": run.goal,
        "repo_path": run.repo_path,
        "profile": run.profile_name,
        "status": run.status,
        "reason": run.reason,
        "stages": stages,
        "totals": {
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "total_tokens": run.total_tokens,
            "cost_usd": float(run.cost_usd),
            "duration_s": run.duration_s,
        },
        "offline": (run.config or {}).get("llm_backend") == "offline",
    }


def run_advance(*, run_id: int, after_stage: str | None = None) -> list[int]:
    """After a stage finished: finish the run when every stage is done, else return the ready
    stage ids (with `after_stage`: only those waiting on that stage, the ones it just made
    ready; the others were dispatched before). Call inside a transaction that holds the run row (select_for_update), so two
    stages finishing together cannot both miss (or both write) the run's end."""
    run = Run.objects.get(pk=run_id)
    statuses = list(StageRun.objects.filter(run_id=run_id).values_list("status", flat=True))
    if statuses and all(s in DONE_STATUSES for s in statuses):
        now = timezone.now()
        reason = f"all {len(statuses)} stages finished"
        updated = Run.objects.filter(pk=run_id, status__in=ACTIVE_RUN).update(
            status=Run.Status.SUCCEEDED, reason=reason, finished_at=now
        )
        if updated:
            run.refresh_from_db()
            summary = run_summary(run)
            artifact, created = artifact_write(
                run=run, stage="", kind=Artifact.Kind.SUMMARY, name=SUMMARY_FILE, data=summary
            )
            if created:
                _artifact_event(artifact)
            events.event_record(
                run_id=run_id,
                kind="run.finished",
                payload={"status": "succeeded", "reason": reason},
            )
        return []
    if run.status not in ACTIVE_RUN:
        return []
    ready = _ready_ids(run)
    if after_stage is not None:
        selected = list(StageRun.objects.filter(run_id=run_id).values_list("stage", flat=True))
        waiting = {
            pk
            for pk, name in StageRun.objects.filter(pk__in=ready).values_list("pk", "stage")
            if after_stage in stage_dependencies(name, selected, sequential=_is_sequential(run))
        }
        ready = [pk for pk in ready if pk in waiting]
    # Dispatched now: keep the sweeper from taking them for a lost dispatch.
    StageRun.objects.filter(pk__in=ready).update(updated_at=timezone.now())
    return ready


def _artifact_event(artifact: Artifact) -> None:
    events.event_record(
        run_id=artifact.run_id,
        kind="artifact.created",
        stage=artifact.stage,
        payload={
            "name": artifact.name,
            "kind": artifact.kind,
            "size": artifact.size,
            "sha256": artifact.sha256,
        },
    )


def stage_artifacts_write(
    *, run: Run, stage: str, artifact: dict | None, patch: str | None
) -> list[str]:
    """Write a stage's JSON artifact (and code's diff.patch) once; returns the file names.
    Records artifact.created for each file written now. Call inside a transaction."""
    names = []
    spec = stage_get(stage)
    if artifact is not None:
        row, created = artifact_write(
            run=run, stage=stage, kind=Artifact.Kind.JSON, name=spec.artifact_file, data=artifact
        )
        names.append(row.name)
        if created:
            _artifact_event(row)
    if patch:
        row, created = artifact_write(
            run=run, stage=stage, kind=Artifact.Kind.PATCH, name=PATCH_FILE, text=patch
        )
        names.append(row.name)
        if created:
            _artifact_event(row)
    return names


# --- claim ---------------------------------------------------------------------------------
def _claim(stage_run_id: int, worker: str) -> tuple[StageRun, str] | None:
    run_id = StageRun.objects.filter(pk=stage_run_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return None  # deleted
    with transaction.atomic():
        # Lock order everywhere: the run row, then stage rows (no deadlock on PostgreSQL).
        run = Run.objects.select_for_update().get(pk=run_id)
        stage = StageRun.objects.filter(pk=stage_run_id).first()
        if stage is None or stage.status != StageRun.Status.QUEUED:
            return None  # gone, or a second delivery of a stage someone already claimed
        if run.status not in ACTIVE_RUN or stage.pk not in _ready_ids(run):
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
        if Run.objects.filter(pk=run.pk, started_at__isnull=True).update(started_at=now):
            events.event_record(
                run_id=run.pk,
                kind="run.started",
                payload={
                    "stages": list((run.config or {}).get("stages") or []),
                    "profile": run.profile_name,
                },
            )
        Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(status=Run.Status.RUNNING)
        stage.refresh_from_db()
        events.event_record(
            run_id=run.pk,
            kind="stage.started",
            stage=stage.stage,
            payload={"attempt": stage.attempt},
        )
    return stage, token


# --- engine --------------------------------------------------------------------------------
_FACTS_CACHE: OrderedDict[tuple[int, str], RepoFacts] = OrderedDict()
_FACTS_LOCK = threading.Lock()


def _run_repo_facts(run: Run) -> RepoFacts:
    """The repository as the run first saw it, read once per run and process: a handful
    of git subprocesses cost more than the rest of a stage's orchestration together."""
    key = (run.pk, run.repo_path)
    with _FACTS_LOCK:
        facts = _FACTS_CACHE.get(key)
    if facts is None:
        facts = repo_facts(run.repo_path)
        with _FACTS_LOCK:
            _FACTS_CACHE[key] = facts
            while len(_FACTS_CACHE) > 256:
                _FACTS_CACHE.popitem(last=False)
    return facts


def _stage_input(run: Run, stage: StageRun) -> StageInput:
    prior: dict[str, dict[str, Any]] = {}
    earlier = Artifact.objects.filter(
        run=run, kind=Artifact.Kind.JSON, stage__in=stage_predecessors(stage.stage)
    ).select_related("run")
    for artifact in earlier:
        data = artifact_read_json(artifact)
        if data is not None:
            prior[artifact.stage] = data
    lessons = HistoryLessons(exclude_run_id=run.pk).lessons_for(
        goal=run.goal, stage=stage.stage, repo_path=run.repo_path, limit=5
    )
    return StageInput(
        stage=stage.stage,
        goal=run.goal,
        repo=_run_repo_facts(run),
        prior_artifacts=prior,
        lessons=tuple(lessons),
        note=stage.note,
        attempt=stage.attempt,
        run_id=run.pk,
    )


def _stage_config(run: Run, stage: str) -> StageConfig:
    """The stage's models and consensus settings, with what is left of the run's budgets.
    Raises BudgetExceeded when a budget is already used up."""
    config = run.config or {}
    budget_tokens = int(config.get("budget_tokens") or 0)
    budget_cost = float(config.get("budget_cost_usd") or 0)
    left_tokens = left_cost = None
    if budget_tokens:
        left_tokens = budget_tokens - run.total_tokens
        if left_tokens <= 0:
            raise BudgetExceeded(
                f"token budget of {budget_tokens} used up ({run.total_tokens} tokens spent)"
            )
    if budget_cost:
        left_cost = budget_cost - float(run.cost_usd)
        if left_cost <= 0:
            raise BudgetExceeded(
                f"cost budget of ${budget_cost:.2f} used up (${float(run.cost_usd):.4f} spent)"
            )
    models = (config.get("models") or {}).get(stage)
    if not models:
        raise ValueError(f"run {run.pk} has no models configured for stage {stage!r}")
    return StageConfig(
        models=dict(models),
        rounds=int(config.get("rounds", 2)),
        quorum=float(config.get("quorum", 2 / 3)),
        threshold=float(config.get("threshold", 0.70)),
        consensus_free=stage in (config.get("consensus_free") or []),
        sequential=config.get("schedule") == "sequential",
        budget_tokens=left_tokens,
        budget_cost_usd=left_cost,
    )


def _completer_build(config: dict[str, Any]):
    return router_build(
        routes=config.get("routes") or None,
        env=dict(os.environ),
        backend_override=config.get("llm_backend") or None,
        replay_path=config.get("replay_path"),
        record_path=config.get("record_path"),
    )


class _Recorder:
    """Turns engine events into RunEvents and LlmCall rows, and keeps the token tally."""

    def __init__(self, stage: StageRun):
        self.stage = stage
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0

    def __call__(self, item: EngineEvent) -> None:
        self.record([item])

    def record(self, items: list[EngineEvent]) -> None:
        """Record a batch of engine events in one transaction: LlmCall rows, RunEvents (in
        order, one seq bump) and one token-tally update. A batch is whatever the engine
        had emitted by the time the recording thread looked, so nothing waits for it."""
        stage = self.stage
        calls: list[LlmCall] = []
        progress: list[tuple[str, str, dict[str, Any] | None]] = []
        tokens_in = tokens_out = 0
        cost = Decimal(0)
        for item in items:
            if isinstance(item, LlmCallDone):
                call_cost = _dec(item.cost_usd)
                calls.append(
                    LlmCall(
                        run_id=stage.run_id,
                        stage=stage.stage,
                        role=item.role,
                        round=max(0, int(item.round)),
                        provider=item.provider[:40],
                        model=item.model[:200],
                        input_tokens=max(0, int(item.input_tokens)),
                        output_tokens=max(0, int(item.output_tokens)),
                        cost_usd=call_cost,
                        latency_ms=max(0, int(item.latency_s * 1000)),
                        attempt=stage.attempt,
                        retries=max(0, int(item.attempts) - 1),
                        error=redact(item.error or "")[:2000],
                        created_at=datetime.fromtimestamp(item.ended_at, tz=UTC),
                    )
                )
                tokens_in += max(0, int(item.input_tokens))
                tokens_out += max(0, int(item.output_tokens))
                cost += call_cost
            elif isinstance(item, AgentMessage):
                payload = {
                    "role": item.role,
                    "round": item.round,
                    "model": item.model,
                    "answer": item.answer,
                    "attempt": stage.attempt,
                }
                progress.append(("stage.progress", stage.stage, payload))
            elif isinstance(item, EngineEvent) and item.kind:
                progress.append((item.kind, stage.stage, _jsonable(item.payload())))
            else:
                logger.warning(
                    "run %s / %s: ignoring engine event %r", stage.run_id, stage.stage, type(item)
                )
        if not (calls or progress):
            return
        with transaction.atomic():
            if calls:
                LlmCall.objects.bulk_create(calls)
                self.tokens_add(tokens_in, tokens_out, float(cost))
            events.events_record(run_id=stage.run_id, items=progress)

    def tokens_add(self, input_tokens: int, output_tokens: int, cost: float) -> None:
        input_tokens, output_tokens = max(0, int(input_tokens)), max(0, int(output_tokens))
        if not (input_tokens or output_tokens or cost):
            return
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost_usd += cost
        delta = {
            "input_tokens": F("input_tokens") + input_tokens,
            "output_tokens": F("output_tokens") + output_tokens,
            "cost_usd": F("cost_usd") + _dec(cost),
        }
        with transaction.atomic():
            Run.objects.filter(pk=self.stage.run_id).update(**delta)
            StageRun.objects.filter(pk=self.stage.pk).update(**delta)

    def outcome_topup(self, outcome: StageOutcome) -> None:
        # Calls the engine counted in its outcome but never reported as LlmCallDone.
        self.tokens_add(
            max(0, outcome.input_tokens - self.input_tokens),
            max(0, outcome.output_tokens - self.output_tokens),
            max(0.0, float(outcome.cost_usd) - self.cost_usd),
        )


def _heartbeat(stage: StageRun, token: str) -> str:
    """'ok', 'lost' (someone else owns the stage now) or 'cancelled' (the run stopped)."""
    owned = StageRun.objects.filter(
        pk=stage.pk, status=StageRun.Status.RUNNING, claim=token
    ).update(heartbeat_at=timezone.now())
    if not owned:
        return "lost"
    status = Run.objects.filter(pk=stage.run_id).values_list("status", flat=True).first()
    if status is None or status in (Run.Status.CANCELLED, Run.Status.FAILED):
        return "cancelled"
    return "ok"


def _engine_run(stage: StageRun, token: str, recorder: _Recorder) -> StageOutcome:
    run = Run.objects.get(pk=stage.run_id)
    inp = _stage_input(run, stage)
    cfg = _stage_config(run, stage.stage)
    inbox: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    box: dict[str, Any] = {}

    def engine_thread() -> None:
        try:
            completer = _completer_build(run.config or {})
            box["outcome"] = asyncio.run(
                stage_run(
                    inp,
                    cfg,
                    completer=completer,
                    emit=inbox.put,
                    is_cancelled=stop.is_set,
                    patch_check=patch_check,
                )
            )
        except BaseException as exc:  # handed to the recording thread, which decides
            box["error"] = exc
        finally:
            inbox.put(_END)

    thread = threading.Thread(target=engine_thread, name=f"tekton-stage-{stage.pk}", daemon=True)
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
                recorder.record(batch)
            if item is _END:
                break
            if time.monotonic() - last >= every:
                last = time.monotonic()
                if state == "ok":
                    state = _heartbeat(stage, token)
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
        "votes": redact(_jsonable(list(outcome.votes))),
        "mediator": redact(_jsonable(dict(outcome.mediator or {}))),
        "checks": redact(_jsonable(list(outcome.checks or []))),
        "reason": redact(outcome.reason or "")[:4000],
    }


def _record_success(
    stage_run_id: int, token: str, outcome: StageOutcome, recorder: _Recorder
) -> list[int]:
    with transaction.atomic():
        run = _lock_run(recorder.stage.run_id)
        stage = _owned(stage_run_id, token)
        recorder.outcome_topup(outcome)
        stage_artifacts_write(
            run=run, stage=stage.stage, artifact=outcome.artifact, patch=outcome.patch
        )
        now = timezone.now()
        StageRun.objects.filter(pk=stage.pk).update(
            status=StageRun.Status.SUCCEEDED,
            finished_at=now,
            heartbeat_at=now,
            draft=None,
            **_outcome_fields(outcome),
        )
        stage.refresh_from_db()
        events.event_record(
            run_id=run.pk,
            kind="stage.finished",
            stage=stage.stage,
            payload={
                "status": stage.status,
                "confidence": stage.confidence,
                "approval": stage.approval,
                "duration_s": stage.duration_s,
                "attempt": stage.attempt,
            },
        )
        return run_advance(run_id=run.pk, after_stage=stage.stage)


def _record_blocked(
    stage_run_id: int, token: str, outcome: StageOutcome, recorder: _Recorder
) -> None:
    with transaction.atomic():
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
            },
        )


def _record_stop(
    stage_run_id: int, token: str, run_id: int, *, status: str, reason: str, fail_run: str | None
) -> None:
    with transaction.atomic():
        _lock_run(run_id)
        stage = _owned(stage_run_id, token)
        StageRun.objects.filter(pk=stage.pk).update(
            status=status, reason=reason, finished_at=timezone.now()
        )
        stage.refresh_from_db()
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
        if stage.attempt < settings.TEKTON_STAGE_MAX_ATTEMPTS:
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
    _record_stop(
        stage_run_id,
        token,
        run_id,
        status=StageRun.Status.FAILED,
        reason=reason,
        fail_run=f"stage {stage.stage} failed after {stage.attempt} attempts: {reason}",
    )
    return []


def stage_execute(*, stage_run_id: int, worker: str = "") -> list[int]:
    """Claim and run one stage; returns the ids of stages that should run next.

    Idempotent: a second delivery, a stage that is not queued, not ready (dependencies
    unfinished) or whose run is not queued/running is a no-op returning []. Outcomes:
    succeeded -> artifacts written once, the next ready stages returned (or the run
    finished with diamond_summary.json); blocked -> the stage and run block, nothing next;
    BudgetExceeded -> stage and run fail; any other error -> [own id] while attempts
    remain (TEKTON_STAGE_MAX_ATTEMPTS), then stage and run fail with a one-line reason;
    a cancelled run -> the stage is cancelled. Never raises for engine failures.
    """
    claimed = _claim(stage_run_id, worker)
    if claimed is None:
        return []
    stage, token = claimed
    recorder = _Recorder(stage)
    try:
        try:
            outcome = _engine_run(stage, token, recorder)
        except StageCancelled:
            _record_stop(
                stage_run_id,
                token,
                stage.run_id,
                status=StageRun.Status.CANCELLED,
                reason="run cancelled",
                fail_run=None,
            )
            return []
        except BudgetExceeded as exc:
            reason = f"budget exceeded: {redact(str(exc))}"
            _record_stop(
                stage_run_id,
                token,
                stage.run_id,
                status=StageRun.Status.FAILED,
                reason=reason,
                fail_run=f"stage {stage.stage} failed: {reason}",
            )
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
            return _record_error(stage_run_id, token, stage.run_id, exc)
        if outcome.status == "succeeded":
            return _record_success(stage_run_id, token, outcome, recorder)
        _record_blocked(stage_run_id, token, outcome, recorder)
        return []
    except LeaseLost:
        logger.warning(
            "run %s / %s: lease lost, leaving the stage to its new owner", stage.run_id, stage.stage
        )
        return []
