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
