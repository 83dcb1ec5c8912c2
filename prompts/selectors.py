"""Reads of prompt invocations for the API, the pages and the CLI."""

from __future__ import annotations

from django.db.models import QuerySet

from prompts.models import PromptEvent, PromptInvocation


def prompt_invocations_visible_to(user) -> QuerySet[PromptInvocation]:
    """Staff see every invocation; others their own (as with runs)."""
    qs = PromptInvocation.objects.select_related("owner")
    if user is None:
        return qs
    if getattr(user, "is_staff", False):
        return qs
    return qs.filter(owner=user)


def prompt_invocations_filter(
    qs: QuerySet[PromptInvocation],
    *,
    agent: str | None = None,
    status: str | None = None,
    text: str | None = None,
) -> QuerySet[PromptInvocation]:
    if agent:
        qs = qs.filter(agent=agent)
    if status:
        qs = qs.filter(status=status)
    if text:
        qs = qs.filter(prompt__icontains=text)
    return qs


def prompt_invocation_get(pk: int) -> PromptInvocation:
    return PromptInvocation.objects.select_related("owner").get(pk=pk)


def prompt_invocations_in_flight_count(user) -> int:
    return PromptInvocation.objects.filter(
        owner=user, status__in=(PromptInvocation.Status.QUEUED, PromptInvocation.Status.RUNNING)
    ).count()


def prompt_invocations_created_since(user, since, limit: int) -> list:
    """When `user` asked since `since`, newest first, at most `limit`."""
    return list(
        PromptInvocation.objects.filter(owner=user, created_at__gte=since)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )


def prompt_events_after(
    invocation_id: int, after_seq: int, limit: int | None = None
) -> list[PromptEvent]:
    """An invocation's events with seq > after_seq, in seq order (at most `limit`)."""
    events = PromptEvent.objects.filter(invocation_id=invocation_id, seq__gt=after_seq).order_by(
        "seq"
    )
    if limit is not None:
        events = events[:limit]
    return list(events)


def prompt_last_event(invocation_id: int) -> dict | None:
    """{"seq", "kind"} of an invocation's newest event, or None before the first."""
    return (
        PromptEvent.objects.filter(invocation_id=invocation_id)
        .order_by("-seq")
        .values("seq", "kind")
        .first()
    )


def prompt_invocation_status(invocation_id: int) -> str | None:
    """An invocation's status; None when it is gone."""
    return (
        PromptInvocation.objects.filter(pk=invocation_id).values_list("status", flat=True).first()
    )
