"""Reads of prompt invocations for the API, the pages and the CLI."""

from __future__ import annotations

from django.db.models import QuerySet

from prompts.models import PromptInvocation


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
