"""Shared reads of users."""

from __future__ import annotations

from django.contrib.auth import get_user_model


def user_by_username(username: str):
    """The user with exactly that username, or None."""
    return get_user_model().objects.filter(username=username).first()
