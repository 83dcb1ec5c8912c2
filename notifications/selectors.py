"""Reads of notification hooks for the pages, the API and the admin."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from notifications.models import Delivery, DeliveryAttempt, Hook


def hooks_visible_to(user) -> QuerySet[Hook]:
    """A person's own hooks; staff see every hook."""
    hooks = Hook.objects.select_related("owner")
    if user.is_staff:
        return hooks
    return hooks.filter(owner=user)


def hook_visible(user, hook_id: int) -> Hook | None:
    return hooks_visible_to(user).filter(pk=hook_id).first()


def deliveries_recent(hooks: QuerySet[Hook], *, limit: int = 25) -> list[Delivery]:
    """The newest deliveries of `hooks`, with their hook and every attempt (three queries)."""
    return list(
        Delivery.objects.filter(hook__in=hooks)
        .select_related("hook")
        .prefetch_related(
            Prefetch("attempts_log", queryset=DeliveryAttempt.objects.order_by("number"))
        )
        .order_by("-created_at", "-id")[:limit]
    )
