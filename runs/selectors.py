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
