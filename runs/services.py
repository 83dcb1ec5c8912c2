"""Every write a person asks for on a run: plan, create, fork, cancel, resume, approve, retry,
abort, and the stale-stage sweeper.

All functions are keyword-only and atomic; events are recorded in the same transaction and
published, like dispatch, only on commit.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runs import events
from runs.artifacts_store import output_dir_check
from runs.forecast import run_forecast
from runs.lifecycle import (
    ACTIVE_RUN,
    DONE_STATUSES,
    run_advance,
    run_ended,
    run_fail,
    stage_artifacts_write,
    stages_ready,
)
from runs.models import Artifact, Run, StageAttempt, StageRun, TestRunRecord
from swarm.context import opening_staggered
from swarm.providers.pricing import FREE_BACKENDS, price_for
from swarm.redact import redact
from swarm.repo import repo_head
from swarm.stages import ROLES, UnknownStageError, stage_dependencies, stage_get, stage_range
from tekton_site.errors import FieldError, StateError
from tekton_site.paths import record_path_check, repo_check

logger = logging.getLogger("tekton.runs.services")


def stages_dispatch(stage_run_ids: list[int]) -> None:
    """runs.dispatch.stages_dispatch, imported on first use."""
    # runs.dispatch pulls in Celery and the engine, which run_plan (`tekton run --explain`) never needs.
    from runs.dispatch import stages_dispatch as dispatch

    dispatch(stage_run_ids)


NOTE_MAX_CHARS = 8000
TEST_COMMAND_MAX_CHARS = 2000
IGNORED_CHANGES_MAX = 200  # uncommitted changes listed on the run


@dataclass
class RunPlan:
    goal: str
    repo_path: str
    profile_name: str
    stages: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    base_commit: str = ""  # HEAD when planned; "" for a repository with no commit
    # What test_debug would run ({command, source, ...} of swarm.testing.TestCommand), or
    # None with the reason in `test_problem`; the uncommitted changes the run ignores.
    tests: dict[str, Any] | None = None
    test_problem: str = ""
    ignored_changes: list[str] = field(default_factory=list)

    def explain(self) -> dict[str, Any]:
        """What would run: stage order, dependencies, roles with models and backends."""
        cfg = self.config
        free = set(cfg.get("consensus_free") or [])
        backends = cfg.get("backends") or {}
        grants = cfg.get("tool_grants") or {}
        stagger = cfg.get("cache_stagger", True) is not False
        stages = []
        for name in self.stages:
            models = (cfg.get("models") or {}).get(name) or {}
            roles = ("proponent", "mediator") if name in free else ROLES
            stages.append(
                {
                    "stage": name,
                    "position": stage_get(name).index,
                    "depends_on": list(stage_dependencies(name, self.stages)),
                    "consensus_free": name in free,
                    "staggered_opening": name not in free
                    and opening_staggered(models, self._price_of, cache_stagger=stagger),
                    "roles": {
                        role: {
                            "model": models.get(role),
                            "backend": backends.get(models.get(role)),
                            "tools": list(grants.get(name, {}).get(role, [])),
                        }
                        for role in roles
                        if role in models
                    },
                }
            )
        return {
            "profile": self.profile_name,
            "base_commit": self.base_commit,
            "rounds": cfg.get("rounds"),
            "quorum": cfg.get("quorum"),
            "threshold": cfg.get("threshold"),
            "max_tool_calls": cfg.get("max_tool_calls"),
            "cache_stagger": stagger,
            "cache_stagger_note": _stagger_note(stagger, stages),
            "tests": {
                "command": (self.tests or {}).get("command"),
                "source": (self.tests or {}).get("source"),
                "problem": self.test_problem,
                "isolation": settings.TEKTON_SANDBOX,
                "limits": cfg.get("sandbox_limits"),
            },
            "ignored_changes": list(self.ignored_changes),
            "stages": stages,
            "forecast": run_forecast(
                profile_name=self.profile_name, stages=self.stages, config=cfg
            ).as_dict(),
        }

    def _price_of(self, model: str) -> tuple[float, float] | None:
        """What a call of `model` costs where this run's config sends it (as the router
        prices it: nothing offline or replayed)."""
        if (self.config.get("backends") or {}).get(model) in FREE_BACKENDS:
            return (0.0, 0.0)
        prices = {m: tuple(p) for m, p in (self.config.get("prices") or {}).items()}
        return price_for(model, prices)


def _stagger_note(on: bool, stages: list[dict[str, Any]]) -> str:
    """What the profile's cache_stagger does to a plan, in a line (every explain)."""
    if not on:
        return "opening round: all three debaters at once (cache_stagger off)"
    staggered = [s["stage"] for s in stages if s["staggered_opening"]]
    if not staggered:
        return (
            "opening round: all three debaters at once (cache_stagger on, but no debate "
            "stage has its three debaters on one priced model)"
        )
    return (
        "opening round staggered for the prompt cache: +1 call of latency per debate "
        f"stage ({', '.join(staggered)})"
    )


def _who(by) -> str:
    if by is not None and getattr(by, "is_authenticated", False):
        return by.get_username()
    try:
        return f"local user {getpass.getuser()}"
    except Exception:  # no passwd entry (containers): still say something
        return "local user"


def _owner(by):
    return by if by is not None and getattr(by, "is_authenticated", False) else None


def run_plan(
    *,
    goal: str,
    repo_path: str | Path,
    profile_name: str | None = None,
    stage_from: str = "plan",
    stage_to: str = "release",
    consensus_free: list[str] | None = None,
    model: str | None = None,
    record_path: str | Path | None = None,
    test_command: str | None = None,
) -> RunPlan:
    """Validate a run request and freeze its configuration. Writes nothing.

    `test_command` overrides the repository's (`.tekton.toml`, or detection); with
    TEKTON_SANDBOX=none a typed one is refused. Raises FieldError with field goal,
    stage_from, stage_to, repo_path, profile, model, consensus_free, test_command (or
    llm_backend) naming the mistake.
    """
    from config_profiles.services import profile_get, profile_resolve
    from swarm.testing import TestCommandError, test_command_resolve
    from swarm.workspace import checkout_changes

    goal = (goal or "").strip()
    if not goal:
        raise FieldError("goal", "the goal is empty; say what the run should achieve")
    if len(goal) > settings.TEKTON_GOAL_MAX_CHARS:
        raise FieldError(
            "goal",
            f"the goal is {len(goal):,} characters; the limit is {settings.TEKTON_GOAL_MAX_CHARS:,}",
        )
    for fld, name in (("stage_from", stage_from), ("stage_to", stage_to)):
        try:
            stage_get(name)
        except UnknownStageError as exc:
            raise FieldError(fld, str(exc)) from None
    try:
        stages = stage_range(stage_from, stage_to)
    except ValueError as exc:
        raise FieldError("stage_to", str(exc)) from None
    path = repo_check(repo_path)
    if record_path:
        record_path = record_path_check(record_path)
    requested = (test_command or "").strip() or None
    if requested is not None and len(requested) > TEST_COMMAND_MAX_CHARS:
        raise FieldError(
            "test_command", f"the test command is over {TEST_COMMAND_MAX_CHARS:,} characters"
        )
    if requested is not None and any(ord(c) < 32 and c not in "\t\n" for c in requested):
        # A NUL cannot reach a shell (nor a PostgreSQL JSON value); other control
        # characters in a command are a paste gone wrong.
        raise FieldError("test_command", "the test command contains control characters")
    tests, problem = None, ""
    try:
        tests = test_command_resolve(
            path, requested, sandbox_mode=settings.TEKTON_SANDBOX
        ).to_dict()
    except TestCommandError as exc:
        if requested is not None:
            raise FieldError("test_command", str(exc)) from None
        problem = str(exc)  # test_debug will block with it; the rest of the run can go on
    profile = profile_get(name=profile_name)
    config = profile_resolve(
        profile=profile,
        stages=stages,
        model=model,
        consensus_free=list(consensus_free) if consensus_free else None,
        record_path=str(record_path) if record_path else None,
        test_command=requested,
    )
    ignored = [str(c) for c in checkout_changes(path)]
    return RunPlan(
        goal=goal,
        repo_path=str(path),
        profile_name=profile.name,
        stages=stages,
        config={**config, "ignored_changes": ignored[:IGNORED_CHANGES_MAX]},
        base_commit=repo_head(path) or "",
        tests=tests,
        test_problem=problem,
        ignored_changes=ignored,
    )


@transaction.atomic
def run_create(
    *,
    goal: str,
    repo_path: str | Path,
    profile_name: str | None = None,
    stage_from: str = "plan",
    stage_to: str = "release",
    consensus_free: list[str] | None = None,
    model: str | None = None,
    output_dir: str | Path | None = None,
    record_path: str | Path | None = None,
    test_command: str | None = None,
    by=None,
    dispatch: bool = True,
) -> Run:
    """Create a queued run with one queued StageRun per selected stage and, on commit,
    dispatch the first ready stage(s) when `dispatch`. `output_dir` (created if missing)
    also receives every artifact and diamond_summary.json (it must not hold another run's).
    The run gets its uid and the namespace it lives in, and the repository's HEAD is frozen
    as its base commit. Raises FieldError; on error nothing is created."""
    plan = run_plan(
        goal=goal,
        repo_path=repo_path,
        profile_name=profile_name,
        stage_from=stage_from,
        stage_to=stage_to,
        consensus_free=consensus_free,
        model=model,
        record_path=record_path,
        test_command=test_command,
    )
    out = str(output_dir_check(output_dir)) if output_dir else ""
    run = Run.objects.create(
        namespace=settings.TEKTON_NAMESPACE,
        goal=redact(plan.goal),
        repo_path=plan.repo_path,
        base_commit=plan.base_commit,
        profile_name=plan.profile_name,
        config=plan.config,
        stage_from=plan.stages[0],
        stage_to=plan.stages[-1],
        owner=_owner(by),
        output_dir=out,
    )
    StageRun.objects.bulk_create(
        [StageRun(run=run, stage=name, position=stage_get(name).index) for name in plan.stages]
    )
    if dispatch:
        stages_dispatch(stages_ready(run_id=run.pk))
    return run


def _fork_config(parent: Run, profile_name: str | None, model: str | None) -> tuple[str, dict]:
    """(profile name, frozen config) of a fork. With neither a profile nor a model the
    parent's frozen configuration is reused as it is (later profile edits do not leak
    in), without its cassette to record into; otherwise the profile (default: the
    parent's) is resolved again for the parent's stage range, keeping the parent's extra
    consensus-free stages and test command. Budgets are the resolved profile's."""
    from config_profiles.services import profile_get, profile_resolve

    config = dict(parent.config or {})
    if profile_name is None and model is None:
        config["record_path"] = None
        return parent.profile_name, config
    profile = profile_get(name=profile_name or parent.profile_name)
    stages = list(config.get("stages") or stage_range(parent.stage_from, parent.stage_to))
    resolved = profile_resolve(
        profile=profile,
        stages=stages,
        model=model,
        consensus_free=list(config.get("consensus_free") or []) or None,
        test_command=config.get("test_command"),
    )
    return profile.name, {**resolved, "ignored_changes": list(config.get("ignored_changes") or [])}


def fork_starts(stages: list[StageRun]) -> list[str]:
    """The stages a run can be forked from, in order: each of its stages up to its first
    unfinished one (every stage before a fork's start must be done to be reused)."""
    starts = []
    for row in sorted(stages, key=lambda r: r.position):
        starts.append(row.stage)
        if row.status not in DONE_STATUSES:
            break
    return starts


@transaction.atomic
def run_fork(
    *,
    parent: Run,
    from_stage: str,
    profile_name: str | None = None,
    model: str | None = None,
    by=None,
    dispatch: bool = True,
) -> Run:
    """A new run that reuses what `parent` finished before `from_stage` and runs from it,
    with another profile and/or model (runs/services._fork_config).

    The fork has the parent's goal, repository, base commit and stage range. Its stages
    before `from_stage` are skipped ("reused from run N") and carry copies of the
    parent's artifacts (JSON and the code stage's patch, so its workspace is rebuilt as
    the parent's was), their outcome (confidence, approval, votes) and test records
    (marked reused); their LLM calls, tokens and cost stay the parent's. Forked after
    code, it shares the parent's branch and head: the change is the parent's. The rest is
    queued and dispatched on commit (when `dispatch`), as run_create does.

    `from_stage` must be one of the parent's stages, and every parent stage before it
    must be done (succeeded or skipped): a fork starts at most at the parent's first
    unfinished stage. The parent may be in any state, still running included: only
    finished stages are reused, and those never change again. Raises FieldError
    (from_stage, profile, model, ...); on error nothing is created. Records run.forked."""
    try:
        start = stage_get(from_stage)
    except UnknownStageError as exc:
        raise FieldError("from_stage", str(exc)) from None
    rows = list(StageRun.objects.filter(run=parent).order_by("position"))
    if from_stage not in {r.stage for r in rows}:
        raise FieldError(
            "from_stage",
            f"run {parent.pk} covers {parent.stage_from} to {parent.stage_to}; "
            f"{from_stage} is not one of its stages",
        )
    earlier = [r for r in rows if r.position < start.index]
    unfinished = [r for r in earlier if r.status not in DONE_STATUSES]
    if unfinished:
        first = unfinished[0]
        raise FieldError(
            "from_stage",
            f"stage {first.stage} of run {parent.pk} is {first.status}; a fork reuses only "
            f"finished stages, so it can start at {first.stage} at the latest",
        )
    profile, config = _fork_config(parent, profile_name, model)
    after_code = any(r.stage == "code" for r in earlier)
    fork = Run.objects.create(
        namespace=settings.TEKTON_NAMESPACE,
        goal=parent.goal,
        repo_path=parent.repo_path,
        base_commit=parent.base_commit,
        branch=parent.branch if after_code else "",
        head_commit=parent.head_commit if after_code else "",
        profile_name=profile,
        config=config,
        stage_from=parent.stage_from,
        stage_to=parent.stage_to,
        owner=_owner(by),
        parent=parent,
        forked_from_stage=from_stage,
    )
    reused = f"reused from run {parent.pk}"
    StageRun.objects.bulk_create(
        [
            StageRun(
                run=fork,
                stage=r.stage,
                position=r.position,
                status=StageRun.Status.SKIPPED,
                reason=reused,
                confidence=r.confidence,
                approval=r.approval,
                votes=r.votes,
                mediator=r.mediator,
                checks=r.checks,
                finished_at=timezone.now(),
            )
            if r.position < start.index
            else StageRun(run=fork, stage=r.stage, position=r.position)
            for r in rows
        ]
    )
    names = [r.stage for r in earlier]
    copied = {
        (a.stage, a.kind): a
        for a in Artifact.objects.filter(
            run=parent, stage__in=names, kind__in=(Artifact.Kind.JSON, Artifact.Kind.PATCH)
        )
    }
    for name in names:
        data, patch = (
            copied.get((name, Artifact.Kind.JSON)),
            copied.get((name, Artifact.Kind.PATCH)),
        )
        stage_artifacts_write(
            run=fork,
            stage=name,
            artifact=data.content if data is not None else None,
            patch=patch.text if patch is not None else None,
        )
    TestRunRecord.objects.bulk_create(
        TestRunRecord(
            run=fork,
            stage=t.stage,
            kind=t.kind,
            repo_path=t.repo_path,
            commit=t.commit,
            command_key=t.command_key,
            data=t.data,
            reused=True,
        )
        for t in TestRunRecord.objects.filter(run=parent, stage__in=names).order_by("id")
    )
    events.event_record(
        run_id=fork.pk,
        kind="run.forked",
        stage=from_stage,
        payload={
            "parent": parent.pk,
            "from_stage": from_stage,
            "reused": names,
            "profile": profile,
            "model": model,
            "by": _who(by),
        },
    )
    if dispatch:
        stages_dispatch(stages_ready(run_id=fork.pk))
    return fork


def _attempts_keep(rows: list[StageRun]) -> None:
    """Set aside the attempts about to be reset (retry, resume): each stage row that ran
    keeps its draft and outcome as a StageAttempt, numbered after the stage's earlier ones."""
    ran = [r for r in rows if r.started_at is not None or r.draft]
    if not ran:
        return
    kept: dict[tuple[int, str], int] = {}
    for run_id, stage in StageAttempt.objects.filter(
        run_id__in={r.run_id for r in ran}, stage__in={r.stage for r in ran}
    ).values_list("run_id", "stage"):
        kept[(run_id, stage)] = kept.get((run_id, stage), 0) + 1
    attempts = []
    for r in ran:
        draft = r.draft if isinstance(r.draft, dict) else {}
        attempts.append(
            StageAttempt(
                run_id=r.run_id,
                stage=r.stage,
                number=kept.get((r.run_id, r.stage), 0) + 1,
                status=r.status,
                reason=r.reason,
                note=r.note,
                artifact=draft.get("artifact"),
                patch=str(draft.get("patch") or ""),
                confidence=r.confidence,
                approval=r.approval,
                started_at=r.started_at,
                finished_at=r.finished_at,
            )
        )
    StageAttempt.objects.bulk_create(attempts)


def run_dispatch(*, run: Run) -> None:
    """Dispatch the ready stages of a run created with `dispatch=False` (a follower that
    must listen before the stages start, as `tekton run --deltas` does). A stage already
    claimed is not ready, so a second call dispatches nothing twice."""
    stages_dispatch(stages_ready(run_id=run.pk))


def _locked(run: Run) -> Run:
    return Run.objects.select_for_update().get(pk=run.pk)


def _stage(run: Run, stage: str) -> StageRun:
    try:
        stage_get(stage)
    except UnknownStageError as exc:
        raise FieldError("stage", str(exc)) from None
    found = StageRun.objects.select_for_update().filter(run=run, stage=stage).first()
    if found is None:
        raise FieldError("stage", f"run {run.pk} does not include stage {stage!r}")
    return found


def _refresh(run: Run) -> Run:
    run.refresh_from_db()
    return run


@transaction.atomic
def run_cancel(*, run: Run, by=None) -> Run:
    """Cancel a queued, running or blocked run. Queued and blocked stages are cancelled now; a
    running stage notices at its next heartbeat and stops. Records run.cancelled.
    Raises StateError for a finished run."""
    locked = _locked(run)
    if locked.status not in (Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.BLOCKED):
        raise StateError(f"run {run.pk} is already {locked.status}; nothing to cancel")
    reason = f"cancelled by {_who(by)}"
    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.CANCELLED, reason=reason, finished_at=now
    )
    StageRun.objects.filter(
        run=run, status__in=(StageRun.Status.QUEUED, StageRun.Status.BLOCKED)
    ).update(status=StageRun.Status.CANCELLED, reason=reason, finished_at=now)
    events.event_record(
        run_id=run.pk, kind="run.cancelled", payload={"status": "cancelled", "reason": reason}
    )
    run_ended(run.pk)
    return _refresh(run)


@transaction.atomic
def run_resume(*, run: Run, by=None) -> Run:
    """Continue a failed, cancelled or blocked run from its first unfinished stage. Stages
    that succeeded or were skipped are kept with their artifacts (never run or written
    again); every other stage goes back to queued with attempt 0 (one that ran keeps its
    attempt as a StageAttempt). Records run.resumed and
    dispatches the ready stages on commit.

    A queued or running run resumes only when it is orphaned (the process that ran it
    died): the lease rule of the sweeper applies, so its stages whose heartbeat is older
    than TEKTON_STAGE_LEASE_SECONDS are requeued and its ready stages dispatched again.
    Raises StateError for a succeeded run, or a running one whose stage is alive."""
    locked = _locked(run)
    if locked.status in ACTIVE_RUN:
        return _run_orphan_resume(locked, by)
    if locked.status not in (Run.Status.FAILED, Run.Status.CANCELLED, Run.Status.BLOCKED):
        raise StateError(
            f"run {run.pk} is {locked.status}; only failed, cancelled or blocked runs resume"
        )
    pending = StageRun.objects.filter(run=run).exclude(status__in=DONE_STATUSES)
    first = pending.order_by("position").values_list("stage", flat=True).first()
    _attempts_keep(list(pending))
    pending.update(
        updated_at=timezone.now(),
        status=StageRun.Status.QUEUED,
        attempt=0,
        claim="",
        heartbeat_at=None,
        started_at=None,
        finished_at=None,
        reason="",
        draft=None,
    )
    Run.objects.filter(pk=run.pk).update(status=Run.Status.QUEUED, reason="", finished_at=None)
    events.event_record(
        run_id=run.pk,
        kind="run.resumed",
        stage=first or "",
        payload={"from_stage": first, "by": _who(by)},
    )
    if first is None:
        # Every stage already finished (e.g. a run cancelled after its last stage): finish it.
        Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
        run_advance(run_id=run.pk)
    else:
        stages_dispatch(stages_ready(run_id=run.pk))
    return _refresh(run)


def _run_orphan_resume(run: Run, by) -> Run:
    now = timezone.now()
    lease = float(settings.TEKTON_STAGE_LEASE_SECONDS)
    alive = (
        StageRun.objects.filter(
            run=run,
            status=StageRun.Status.RUNNING,
            heartbeat_at__gte=now - timedelta(seconds=lease),
        )
        .values_list("stage", "heartbeat_at")
        .first()
    )
    if alive is not None:
        ago = (now - alive[1]).total_seconds()
        raise StateError(
            f"run {run.pk} is {run.status}: stage {alive[0]} is alive (heartbeat {ago:.0f} s "
            f"ago); a stage is taken for orphaned after {lease:.0f} s of silence"
        )
    # A ready stage sent within the lease is still on its way to a worker, not lost.
    waiting = (
        StageRun.objects.filter(
            pk__in=stages_ready(run_id=run.pk), updated_at__gte=now - timedelta(seconds=lease)
        )
        .values_list("stage", "updated_at")
        .first()
    )
    if waiting is not None:
        ago = (now - waiting[1]).total_seconds()
        raise StateError(
            f"run {run.pk} is {run.status}: stage {waiting[0]} was queued {ago:.0f} s ago and "
            f"waits for a worker; a stage is taken for lost after {lease:.0f} s"
        )
    runs_requeue_stale(now=now, run_id=run.pk, lease_s=0)
    first = (
        StageRun.objects.filter(run=run, status=StageRun.Status.QUEUED)
        .order_by("position")
        .values_list("stage", flat=True)
        .first()
    )
    events.event_record(
        run_id=run.pk,
        kind="run.resumed",
        stage=first or "",
        payload={"from_stage": first, "by": _who(by), "orphaned": True},
    )
    return _refresh(run)


def _run_goes_on(run: Run) -> None:
    """After a person unblocked a stage: the run stays blocked while another stage is
    blocked, else it runs again (or finishes); ready stages are dispatched on commit."""
    if StageRun.objects.filter(run=run, status=StageRun.Status.BLOCKED).exists():
        Run.objects.filter(pk=run.pk).update(status=Run.Status.BLOCKED)
        return
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, reason="", finished_at=None)
    stages_dispatch(run_advance(run_id=run.pk))


@transaction.atomic
def stage_approve(*, run: Run, stage: str, by=None) -> Run:
    """Accept a blocked stage anyway: its draft artifact (and patch) becomes the real
    artifact and the stage succeeds; with no valid draft artifact the stage is skipped
    ("approved without artifact by <user>"). Records stage.approved; the run goes on.
    Raises StateError when the stage is not blocked, FieldError for a bad stage."""
    locked = _locked(run)
    row = _stage(locked, stage)
    if row.status != StageRun.Status.BLOCKED or locked.status != Run.Status.BLOCKED:
        raise StateError(
            f"stage {stage} of run {run.pk} is {row.status} (run {locked.status}); only a blocked stage can be approved"
        )
    who = _who(by)
    draft = row.draft or {}
    artifact = draft.get("artifact")
    if artifact and stage == "code" and (draft.get("patch") or "").strip():
        from runs.stage_work import code_change_commit  # git and the sandbox: only here

        artifact = {**artifact, "workspace": code_change_commit(locked, draft["patch"])}
    if artifact:
        names = stage_artifacts_write(
            run=locked, stage=stage, artifact=artifact, patch=draft.get("patch")
        )
        status, reason = StageRun.Status.SUCCEEDED, f"approved by {who} despite: {row.reason}"
    else:
        names = []
        status, reason = StageRun.Status.SKIPPED, f"approved without artifact by {who}"
    StageRun.objects.filter(pk=row.pk).update(
        status=status, reason=reason[:4000], approved_by=_owner(by), finished_at=timezone.now()
    )
    events.event_record(
        run_id=run.pk,
        kind="stage.approved",
        stage=stage,
        payload={"status": status, "by": who, "reason": reason, "artifacts": names},
    )
    _run_goes_on(locked)
    return _refresh(run)


@transaction.atomic
def stage_retry(*, run: Run, stage: str, note: str, by=None) -> Run:
    """Run a blocked or failed stage again with a person's note (it goes into the stage's
    prompts). The stage goes back to queued with attempt 0; in a failed or cancelled run
    the other failed or cancelled stages are queued again too, so the run can finish.
    Each attempt set aside keeps its draft and outcome as a StageAttempt. Records
    stage.retried; the run goes on. Raises StateError / FieldError."""
    locked = _locked(run)
    row = _stage(locked, stage)
    if row.status not in (StageRun.Status.BLOCKED, StageRun.Status.FAILED):
        raise StateError(
            f"stage {stage} of run {run.pk} is {row.status}; only a blocked or failed stage can be retried"
        )
    if locked.status not in (Run.Status.BLOCKED, Run.Status.FAILED):
        raise StateError(
            f"run {run.pk} is {locked.status}; only a blocked or failed run can retry a stage"
        )
    note = redact((note or "").strip())
    if len(note) > NOTE_MAX_CHARS:
        raise FieldError(
            "note", f"the note is {len(note):,} characters; the limit is {NOTE_MAX_CHARS:,}"
        )
    reset = {
        "updated_at": timezone.now(),
        "status": StageRun.Status.QUEUED,
        "attempt": 0,
        "claim": "",
        "heartbeat_at": None,
        "started_at": None,
        "finished_at": None,
        "draft": None,
    }
    others = StageRun.objects.none()
    if locked.status == Run.Status.FAILED:
        others = StageRun.objects.filter(
            run=run, status__in=(StageRun.Status.FAILED, StageRun.Status.CANCELLED)
        ).exclude(pk=row.pk)
    _attempts_keep([row, *others])
    StageRun.objects.filter(pk=row.pk).update(note=note, reason="", **reset)
    others.update(reason="", **reset)
    events.event_record(
        run_id=run.pk,
        kind="stage.retried",
        stage=stage,
        payload={"note": note, "by": _who(by), "attempt": 0},
    )
    _run_goes_on(locked)
    return _refresh(run)


@transaction.atomic
def run_abort(*, run: Run, by=None) -> Run:
    """Give up on a blocked run: it is cancelled with a reason saying it was aborted, and its
    blocked and queued stages are cancelled. Raises StateError unless the run is blocked."""
    locked = _locked(run)
    if locked.status != Run.Status.BLOCKED:
        raise StateError(f"run {run.pk} is {locked.status}; only a blocked run can be aborted")
    blocked = list(
        StageRun.objects.filter(run=run, status=StageRun.Status.BLOCKED).values_list(
            "stage", flat=True
        )
    )
    reason = f"aborted by {_who(by)} at blocked stage {', '.join(blocked) or '?'}"
    now = timezone.now()
    StageRun.objects.filter(
        run=run, status__in=(StageRun.Status.QUEUED, StageRun.Status.BLOCKED)
    ).update(status=StageRun.Status.CANCELLED, reason=reason, finished_at=now)
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.CANCELLED, reason=reason, finished_at=now
    )
    events.event_record(
        run_id=run.pk, kind="run.cancelled", payload={"status": "cancelled", "reason": reason}
    )
    run_ended(run.pk)
    return _refresh(run)


@transaction.atomic
def run_budget_set(
    *, run: Run, tokens: int | None = None, cost_usd: Decimal | float | str | None = None, by=None
) -> Run:
    """Change a run's token and/or cost budget (0 = no limit); what is not given stays.
    Calls in flight keep their reservations; a stage blocked by the budget runs again
    when a person retries it. A cost budget needs a price for every model the run's
    calls are not answered offline by (FieldError "cost_usd" naming them). Records
    run.budget. Raises FieldError for a bad value, StateError for a succeeded run."""
    from config_profiles.services import unpriced_refusal
    from swarm.providers.pricing import unpriced_models

    if tokens is None and cost_usd is None:
        raise FieldError("tokens", "give a token budget, a cost budget, or both")
    locked = _locked(run)
    if locked.status == Run.Status.SUCCEEDED:
        raise StateError(f"run {run.pk} already succeeded; there is nothing left to budget")
    config = dict(locked.config or {})
    before = {
        "tokens": int(config.get("budget_tokens") or 0),
        "cost_usd": float(config.get("budget_cost_usd") or 0),
    }
    if tokens is not None:
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise FieldError(
                "tokens", f"tokens must be a whole number >= 0 (0 = no limit), got {tokens!r}"
            )
        config["budget_tokens"] = tokens
    if cost_usd is not None:
        try:
            cost = Decimal(str(cost_usd))
        except InvalidOperation:
            raise FieldError(
                "cost_usd", f"cost_usd must be a number >= 0, got {cost_usd!r}"
            ) from None
        if isinstance(cost_usd, bool) or not cost.is_finite() or cost < 0:
            raise FieldError(
                "cost_usd", f"cost_usd must be a number >= 0 (0 = no limit), got {cost_usd!r}"
            )
        if cost > 0:
            prices = {m: tuple(p) for m, p in (config.get("prices") or {}).items()}
            unpriced = unpriced_models(config.get("backends") or {}, prices)
            if unpriced:
                raise FieldError("cost_usd", unpriced_refusal(locked.profile_name, unpriced))
        config["budget_cost_usd"] = float(round(cost, 4))
    Run.objects.filter(pk=run.pk).update(config=config, updated_at=timezone.now())
    after = {
        "tokens": int(config.get("budget_tokens") or 0),
        "cost_usd": float(config.get("budget_cost_usd") or 0),
    }
    events.event_record(
        run_id=run.pk,
        kind="run.budget",
        payload={
            **after,
            "before": before,
            "spent": {"tokens": locked.total_tokens, "cost_usd": float(locked.cost_usd)},
            "by": _who(by),
        },
    )
    return _refresh(run)


def runs_requeue_stale(
    *, now: datetime | None = None, run_id: int | None = None, lease_s: float | None = None
) -> int:
    """The sweeper. Returns how many stages it sent back to be run.

    - RUNNING stages whose heartbeat is older than TEKTON_STAGE_LEASE_SECONDS (their worker
      died): back to QUEUED and dispatched, or, when their attempts reached
      TEKTON_STAGE_MAX_ATTEMPTS, failed together with the run ("worker lost N times");
      stale stages of a run that already ended are cancelled.
    - QUEUED, ready stages of a queued/running run untouched for longer than the lease (a
      lost dispatch): dispatched again.
    Every change is a conditional update, so any number of sweepers may run at once.
    `run_id` limits the sweep to one run; `lease_s` replaces the lease (a resume of an
    orphaned run takes every stage as lost). Every mode sweeps: Celery workers, and in
    embedded mode the web process (tekton_site/asgi.py) and a resume.
    """
    now = now or timezone.now()
    lease = float(settings.TEKTON_STAGE_LEASE_SECONDS if lease_s is None else lease_s)
    cutoff = now - timedelta(seconds=lease)
    max_attempts = settings.TEKTON_STAGE_MAX_ATTEMPTS
    count = 0
    stale = StageRun.objects.filter(
        status=StageRun.Status.RUNNING, heartbeat_at__lt=cutoff
    ).select_related("run")
    if run_id is not None:
        stale = stale.filter(run_id=run_id)
    for stage in stale:
        with transaction.atomic():
            Run.objects.select_for_update().filter(
                pk=stage.run_id
            ).first()  # lock order: run, then stage
            guard = {
                "pk": stage.pk,
                "status": StageRun.Status.RUNNING,
                "claim": stage.claim,
                "heartbeat_at": stage.heartbeat_at,
            }
            if stage.run.status not in (*ACTIVE_RUN, Run.Status.BLOCKED):
                StageRun.objects.filter(**guard).update(
                    status=StageRun.Status.CANCELLED,
                    reason=f"run {stage.run.status}",
                    finished_at=now,
                )
                continue
            if stage.attempt >= max_attempts:
                reason = f"worker lost {stage.attempt} times"
                if StageRun.objects.filter(**guard).update(
                    status=StageRun.Status.FAILED, reason=reason, finished_at=now, claim=""
                ):
                    events.event_record(
                        run_id=stage.run_id,
                        kind="stage.finished",
                        stage=stage.stage,
                        payload={
                            "status": "failed",
                            "reason": reason,
                            "confidence": None,
                            "approval": None,
                            "duration_s": None,
                            "attempt": stage.attempt,
                        },
                    )
                    run_fail(run_id=stage.run_id, reason=f"stage {stage.stage} failed: {reason}")
                continue
            if StageRun.objects.filter(**guard).update(
                status=StageRun.Status.QUEUED,
                claim="",
                heartbeat_at=None,
                reason="worker lost; requeued",
                updated_at=now,
            ):
                events.event_record(
                    run_id=stage.run_id,
                    kind="stage.retried",
                    stage=stage.stage,
                    payload={
                        "reason": "worker lost (heartbeat stale)",
                        "attempt": stage.attempt,
                        "automatic": True,
                    },
                )
                stages_dispatch([stage.pk])
                count += 1
    lost = StageRun.objects.filter(
        status=StageRun.Status.QUEUED, updated_at__lt=cutoff, run__status__in=ACTIVE_RUN
    )
    if run_id is not None:
        lost = lost.filter(run_id=run_id)
    lost = lost.values_list("run_id", "pk")
    by_run: dict[int, set[int]] = {}
    for run_id, pk in lost:
        by_run.setdefault(run_id, set()).add(pk)
    for run_id, pks in by_run.items():
        ready = [pk for pk in stages_ready(run_id=run_id) if pk in pks]
        if ready:
            # Touch the rows so the next sweep leaves them alone for another lease.
            StageRun.objects.filter(pk__in=ready, status=StageRun.Status.QUEUED).update(
                updated_at=now
            )
            stages_dispatch(ready)
            count += len(ready)
    return count
