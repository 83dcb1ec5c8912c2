"""The run lifecycle: which stages are ready, how a run advances when a stage finishes,
how it fails, its summary, and writing a stage's artifacts.

`services` (a person's actions), `dispatch` (what runs next) and `execution` (a stage's
outcome) all move a run through these functions; none of them is reached sideways. Every
function expects to run inside the caller's transaction where it says so.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from runs import events
from runs.artifacts_store import artifact_write, artifacts_write
from runs.models import Artifact, LlmCall, Run, StageRun
from swarm.redact import redact
from swarm.stages import PATCH_FILE, SUMMARY_FILE, stage_dependencies, stage_get

logger = logging.getLogger("tekton.runs.lifecycle")

DONE_STATUSES = (StageRun.Status.SUCCEEDED, StageRun.Status.SKIPPED)
ACTIVE_RUN = (Run.Status.QUEUED, Run.Status.RUNNING)


def _is_sequential(run: Run) -> bool:
    # "schedule": "sequential" replays the predecessor's schedule (every call and every
    # stage one after another); benchmarks compare against it.
    return (run.config or {}).get("schedule") == "sequential"


def _stage_rows(run_id: int) -> list[dict]:
    return list(StageRun.objects.filter(run_id=run_id).values("id", "stage", "status"))


def ready_ids(run: Run, rows: list[dict] | None = None) -> list[int]:
    """Queued stages of `run` whose dependencies are done (whatever the run's status);
    `rows` are its stages' id, stage and status when the caller read them already."""
    rows = _stage_rows(run.pk) if rows is None else rows
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
    return ready_ids(run)


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
        run_ended(run_id)
    return bool(updated)


def run_ended(run_id: int) -> None:
    """Once the transaction that ended the run commits: remove its workspace (a blocked
    run keeps its own; the branch always stays)."""

    def release() -> None:
        from runs.stage_work import workspace_release  # the workspace machinery: only here

        run = Run.objects.filter(pk=run_id).first()
        if run is not None and run.is_finished:
            workspace_release(run)

    transaction.on_commit(release)


def run_summary(run: Run) -> dict[str, Any]:
    """diamond_summary.json: every stage's outcome and the run's totals."""
    names: dict[str, list[str]] = {}
    # Names only: the rows' JSON is not decoded for a list of file names.
    rows = (
        Artifact.objects.filter(run=run)
        .exclude(kind=Artifact.Kind.SUMMARY)
        .values_list("stage", "name")
    )
    for stage_name, name in rows:
        names.setdefault(stage_name, []).append(name)
    # Which backend answered each stage's calls, from the calls themselves (the mode the
    # run was configured with says only what it asked for: "auto" may well be offline).
    answered: dict[str, dict[str, int]] = {}
    rows = (
        LlmCall.objects.filter(run=run, error="")
        .values("stage", "provider")
        .annotate(n=Count("id"))
        .order_by("stage", "provider")
    )
    for row in rows:
        answered.setdefault(row["stage"], {})[row["provider"]] = row["n"]
    stages = []
    # Not the drafts and the mediators' JSON, which the summary does not show.
    for s in (
        StageRun.objects.filter(run=run).order_by("position").defer("draft", "mediator", "checks")
    ):
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
                "answered_by": answered.get(s.stage, {}),
                "offline": _only_offline(answered.get(s.stage, {})),
                "input_tokens": s.input_tokens,
                "cached_input_tokens": s.cached_input_tokens,
                "cache_write_tokens": s.cache_write_tokens,
                "output_tokens": s.output_tokens,
                "cost_usd": float(s.cost_usd),
                "duration_s": s.duration_s,
            }
        )
    return {
        "run_id": run.pk,
        "run_uid": str(run.uid),
        "run_name": run.name,
        "base_commit": run.base_commit or None,
        "goal": run.goal,
        "repo_path": run.repo_path,
        "profile": run.profile_name,
        "status": run.status,
        "reason": run.reason,
        "stages": stages,
        "totals": {
            "input_tokens": run.input_tokens,
            "cached_input_tokens": run.cached_input_tokens,
            "cache_write_tokens": run.cache_write_tokens,
            "output_tokens": run.output_tokens,
            "total_tokens": run.total_tokens,
            "cost_usd": float(run.cost_usd),
            "duration_s": run.duration_s,
        },
        "answered_by": _calls_by_provider(answered),
        "offline": _only_offline(_calls_by_provider(answered)),
    }


def _calls_by_provider(answered: dict[str, dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for providers in answered.values():
        for provider, n in providers.items():
            total[provider] = total.get(provider, 0) + n
    return dict(sorted(total.items()))


def _only_offline(providers: dict[str, int]) -> bool:
    """True when calls were made and the offline backend answered every one."""
    return bool(providers) and set(providers) == {"offline"}


def run_advance(
    *, run_id: int, after_stage: str | None = None, run: Run | None = None
) -> list[int]:
    """After a stage finished: finish the run when every stage is done, else return the ready
    stage ids (with `after_stage`: only those waiting on that stage, the ones it just made
    ready; the others were dispatched before). Call inside a transaction that holds the run row (select_for_update), so two
    stages finishing together cannot both miss (or both write) the run's end. `run` is the
    row the caller locked and read in this transaction (its status and config are used)."""
    if run is None:
        run = Run.objects.get(pk=run_id)
    rows = _stage_rows(run_id)  # one read serves the end check, readiness and the waiters
    statuses = [r["status"] for r in rows]
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
            run_ended(run_id)
        return []
    if run.status not in ACTIVE_RUN:
        return []
    ready = ready_ids(run, rows)
    if after_stage is not None:
        selected = [r["stage"] for r in rows]
        name_of = {r["id"]: r["stage"] for r in rows}
        sequential = _is_sequential(run)
        ready = [
            pk
            for pk in ready
            if after_stage in stage_dependencies(name_of[pk], selected, sequential=sequential)
        ]
    if ready:
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
    spec = stage_get(stage)
    items: list[dict[str, Any]] = []
    if artifact is not None:
        name = spec.artifact_file
        items.append({"stage": stage, "kind": Artifact.Kind.JSON, "name": name, "data": artifact})
    if patch:
        items.append(
            {"stage": stage, "kind": Artifact.Kind.PATCH, "name": PATCH_FILE, "text": patch}
        )
    if not items:
        return []
    written = artifacts_write(run=run, items=items)  # code's two: one insert
    for row, created in written:
        if created:
            _artifact_event(row)
    return [row.name for row, _ in written]
