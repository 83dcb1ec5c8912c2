"""`manage.py tekton token ...` and `tekton user-ensure` (accounts' plugin of the tekton
command group) through call_command."""

from __future__ import annotations

import pytest

from tests.cli import tekton

pytestmark = pytest.mark.django_db


def test_token_create_prints_it_once_on_the_last_line_and_stores_a_hash(django_user_model):
    from accounts.models import ApiToken
    from accounts.services import token_hash

    django_user_model.objects.create_user("ada", password="x")
    code, out, _ = tekton("token", "create", "ada", "--name", "ci")
    assert code == 0
    raw = out.strip().splitlines()[-1]
    assert raw.startswith("tkn_")
    token = ApiToken.objects.get()
    assert token.token_hash == token_hash(raw) and raw not in str(token.__dict__)
    code, out, _ = tekton("token", "list")
    assert f"tkn_{token.prefix}" in out and raw not in out
    code, out, _ = tekton("token", "revoke", f"tkn_{token.prefix}")
    assert code == 0 and "revoked" in out
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_token_create_for_an_unknown_user_is_a_usage_error():
    code, _, err = tekton("token", "create", "nobody")
    assert code == 2 and "nobody" in err


def test_user_ensure_creates_a_staff_login_once(django_user_model):
    code, out, _ = tekton("user-ensure", "boss")
    assert code == 0
    password = out.split("password: ")[1].split()[0]
    user = django_user_model.objects.get(username="boss")
    assert user.is_staff and user.check_password(password)
    code, out, _ = tekton("user-ensure", "boss")
    assert code == 0 and "exists" in out and password not in out
    assert django_user_model.objects.filter(username="boss").count() == 1
