"""Reads of model profiles for the adapters (pages, API, the run launcher)."""

from __future__ import annotations

from config_profiles.models import Profile


def profiles_all() -> list[Profile]:
    """Every profile, by name."""
    return list(Profile.objects.order_by("name"))


def profile_names() -> list[str]:
    return list(Profile.objects.order_by("name").values_list("name", flat=True))
