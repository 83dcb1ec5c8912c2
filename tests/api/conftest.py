"""API test fixtures: real tokens, clients that send them, and a no-op dispatch."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.services import token_create


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The user fixtures set passwords; the default PBKDF2 costs seconds per test here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def clear_cache():
    # The system checks API caches per user id, and ids repeat across rolled-back tests.
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def no_dispatch(monkeypatch):
    """Runs created through the API stay queued: nothing executes them."""
    calls: list[list[int]] = []
    monkeypatch.setattr("runs.services.stages_dispatch", lambda ids: calls.append(list(ids)))
    return calls


@pytest.fixture
def token(user) -> str:
    return token_create(user=user, name="tests")[1]


@pytest.fixture
def staff_token(staff_user) -> str:
    return token_create(user=staff_user, name="tests")[1]


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def api(token) -> APIClient:
    """A client authenticated as `user` (ada) with a real bearer token."""
    return bearer(token)


@pytest.fixture
def staff_api(staff_token) -> APIClient:
    """A client authenticated as `staff_user` (grace)."""
    return bearer(staff_token)


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="mallory", password="pw-for-tests-only")
