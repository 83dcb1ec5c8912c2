from __future__ import annotations

import pytest

from accounts.services import staff_user_ensure

pytestmark = pytest.mark.django_db


def test_staff_user_ensure_creates_a_superuser_once(django_user_model):
    user, created = staff_user_ensure(username="boss", password="first-pw-1234")
    assert created and user.is_staff and user.is_superuser
    again, created = staff_user_ensure(username="boss", password="other-pw-5678")
    assert not created and again.pk == user.pk
    again.refresh_from_db()
    assert again.check_password("first-pw-1234")  # an existing login keeps its password


def test_staff_user_ensure_leaves_an_existing_plain_user_alone(django_user_model):
    django_user_model.objects.create_user(username="ada", password="x")
    user, created = staff_user_ensure(username="ada", password="ignored-pw-1234")
    assert not created and not user.is_staff
    assert django_user_model.objects.filter(username="ada").count() == 1
