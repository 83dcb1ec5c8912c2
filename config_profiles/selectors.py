"""Reads of model profiles for the adapters (pages, API, the run launcher)."""

from __future__ import annotations

from config_profiles.models import Profile


def profiles_all() -> list[Profile]:
    """Every profile, by name."""
    return list(Profile.objects.order_by("name"))


def profile_names() -> list[str]:
    return list(Profile.objects.order_by("name").values_list("name", flat=True))


def profiles_in_use(names: list[str]) -> list[Profile]:
    """The default profile and the profiles named in `names` (those recent runs used)."""
    from config_profiles.models import DEFAULT_PROFILE_NAME

    wanted = {DEFAULT_PROFILE_NAME, *names}
    return list(Profile.objects.filter(name__in=wanted).order_by("name"))


def capabilities_learned() -> list:
    """What model servers refused (LearnedCapability rows), newest first."""
    from config_profiles.models import LearnedCapability

    return list(LearnedCapability.objects.order_by("-learned_at")[:50])
