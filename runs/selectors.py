"""Shared reads of run history."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from runs.models import Run, RunEvent


def runs_visible_to(user) -> QuerySet[Run]:
    """Runs a user may see: all for None (the CLI) and staff, their own otherwise, none
    for an anonymous user."""
    runs = Run.objects.select_related("owner")
    if user is None or getattr(user, "is_staff", False) or getattr(user, "is_superuser", False):
        return runs.all()
    if not getattr(user, "is_authenticated", False):
        return runs.none()
    return runs.filter(owner=user)


def run_get(run_id: int) -> Run:
    """One run; raises Run.DoesNotExist."""
    return Run.objects.select_related("owner").get(pk=run_id)


def run_events_after(run_id: int, after_seq: int, limit: int | None = None) -> list[RunEvent]:
    """A run's events with seq > after_seq, in seq order (at most `limit`)."""
    events = RunEvent.objects.filter(run_id=run_id, seq__gt=after_seq).order_by("seq")
    if limit is not None:
        events = events[:limit]
    return list(events)


def run_detail(run_id: int) -> Run:
    """A run with its stages and artifacts prefetched; raises Run.DoesNotExist."""
    return (
        Run.objects.select_related("owner").prefetch_related("stages", "artifacts").get(pk=run_id)
    )


def run_repositories_recent(user, *, runs: int = 50, limit: int = 10) -> list[str]:
    """The distinct repositories of the user's most recent runs, newest first."""
    paths = runs_visible_to(user).order_by("-created_at", "-id").values_list("repo_path", flat=True)
    return list(dict.fromkeys(p for p in paths[:runs] if p))[:limit]


def runs_filtered(runs: QuerySet[Run], filters: dict[str, Any]) -> QuerySet[Run]:
    """`runs` narrowed by the list filters the API and the runs page share: status,
    profile, repo (text in the path), q (text in the goal), created_after, created_before.
    Missing or empty filters are ignored."""
    if filters.get("status"):
        runs = runs.filter(status=filters["status"])
    if filters.get("profile"):
        runs = runs.filter(profile_name=filters["profile"])
    if filters.get("repo"):
        runs = runs.filter(repo_path__icontains=filters["repo"])
    if filters.get("q"):
        runs = runs.filter(goal__icontains=filters["q"])
    if filters.get("created_after"):
        runs = runs.filter(created_at__gte=filters["created_after"])
    if filters.get("created_before"):
        runs = runs.filter(created_at__lt=filters["created_before"])
    return runs


# --- the command line (manage.py tekton) ---------------------------------------------------
# Kept together at the end of the module, imports included, so this block merges apart
# from the functions above.

from django.db.models import Count, Q  # noqa: E402

from runs.models import StageRun  # noqa: E402


def run_status(run_id: int) -> str | None:
    """A run's status; None when the run is gone."""
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()


def run_has_stage_running(run_id: int) -> bool:
    """Whether one of the run's stages is running now (in any process)."""
    return StageRun.objects.filter(run_id=run_id, status=StageRun.Status.RUNNING).exists()


def run_blocked_at(run: Run) -> tuple[str | None, str]:
    """(stage, reason) of a blocked run: its blocked stage and that stage's reason, or
    (None, the run's own reason) when no stage is marked blocked."""
    blocked = (
        StageRun.objects.filter(run=run, status=StageRun.Status.BLOCKED)
        .values_list("stage", "reason")
        .first()
    )
    if blocked is None:
        return None, run.reason
    return blocked[0], blocked[1]


def runs_with_progress(user, *, status: str | None = None) -> QuerySet[Run]:
    """runs_visible_to(user), newest first, each annotated with stages_total and
    stages_done (succeeded or skipped); only runs in `status` when given."""
    done = (StageRun.Status.SUCCEEDED, StageRun.Status.SKIPPED)
    runs = runs_visible_to(user)
    if status:
        runs = runs.filter(status=status)
    # Meta.ordering is ignored once the query aggregates: order explicitly.
    return runs.annotate(
        stages_total=Count("stages"),
        stages_done=Count("stages", filter=Q(stages__status__in=done)),
    ).order_by("-created_at", "-id")
