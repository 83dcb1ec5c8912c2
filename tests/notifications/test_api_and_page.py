"""The hooks API and the Webhooks page: ownership as for runs, the secret shown once."""

from __future__ import annotations

import pytest

from accounts.services import token_create
from notifications.models import Hook
from notifications.services import hook_create
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def body(receiver_url="http://127.0.0.1:9/hook", **extra):
    return {"name": "ops", "url": receiver_url, "events": ["stage.blocked"], **extra}


def test_create_answers_the_secret_once_and_never_again(user):
    api = bearer(token_create(user=user, name="t")[1])
    created = api.post("/api/hooks/", body(), format="json")
    assert created.status_code == 201, created.json()
    secret = created.json()["secret"]
    hook_id = created.json()["hook"]["id"]
    assert secret.startswith("whsec_")
    for path in ("/api/hooks/", f"/api/hooks/{hook_id}/", f"/api/hooks/{hook_id}/deliveries/"):
        answer = api.get(path)
        assert answer.status_code == 200
        assert secret not in answer.content.decode()


def test_another_persons_hook_is_404_and_staff_see_all(user, staff_user, django_user_model):
    hook, _ = hook_create(owner=user, name="mine", url="http://127.0.0.1:9/", events=["run.failed"])
    other = django_user_model.objects.create_user("mallory", password="pw-for-tests-only")
    mallory = bearer(token_create(user=other, name="t")[1])
    assert mallory.get(f"/api/hooks/{hook.pk}/").status_code == 404
    assert mallory.delete(f"/api/hooks/{hook.pk}/").status_code == 404
    assert mallory.get("/api/hooks/").json() == []
    staff = bearer(token_create(user=staff_user, name="t")[1])
    assert [h["name"] for h in staff.get("/api/hooks/").json()] == ["mine"]
    assert Hook.objects.filter(pk=hook.pk).exists()


def test_errors_name_the_field(user, settings):
    api = bearer(token_create(user=user, name="t")[1])
    settings.TEKTON_WEBHOOK_ALLOW_PRIVATE = False
    refused = api.post("/api/hooks/", body(), format="json")
    assert refused.status_code == 400
    assert "loopback" in refused.json()["errors"]["url"][0]
    settings.TEKTON_WEBHOOK_KEYS = []
    settings.TEKTON_WEBHOOK_ALLOW_PRIVATE = True
    no_key = api.post("/api/hooks/", body(), format="json")
    assert "TEKTON_WEBHOOK_KEY" in no_key.json()["errors"]["url"][0]
    unknown = api.post("/api/hooks/", body(events=["run.exploded"]), format="json")
    assert "events.0" in unknown.json()["errors"]
    staff_only = api.post("/api/hooks/", body(profile="diamond-v5"), format="json")
    assert "only staff" in staff_only.json()["errors"]["profile"][0]


def test_pause_and_resume(user):
    api = bearer(token_create(user=user, name="t")[1])
    hook_id = api.post("/api/hooks/", body(), format="json").json()["hook"]["id"]
    assert api.post(f"/api/hooks/{hook_id}/resume/").status_code == 409
    assert api.post(f"/api/hooks/{hook_id}/pause/").json()["is_active"] is False
    assert api.post(f"/api/hooks/{hook_id}/resume/").json()["is_active"] is True


def test_unauthenticated_is_401():
    from rest_framework.test import APIClient

    assert APIClient().get("/api/hooks/").status_code == 401


def test_the_page_shows_the_secret_once_and_the_paused_reason(client, user):
    client.force_login(user)
    answer = client.post(
        "/hooks/new/",
        {"name": "ops <b>", "url": "http://127.0.0.1:9/hook", "events": ["run.failed"]},
    )
    page = answer.content.decode()
    secret = Hook.objects.get().secret_hint
    assert answer.status_code == 200
    assert "shown <strong>only now</strong>" in page
    assert secret in page
    assert "ops &lt;b&gt;" in page and "ops <b>" not in page
    created = page.split('<code class="secret">')[1].split("</code>")[0]
    again = client.get("/hooks/").content.decode()
    assert created not in again

    Hook.objects.update(is_active=False, paused_reason="paused after 5 failed deliveries")
    again = client.get("/hooks/").content.decode()
    assert "is paused: paused after 5 failed deliveries" in again
    assert "Resume" in again


def test_the_page_says_why_webhooks_cannot_be_created(client, user, settings):
    settings.TEKTON_WEBHOOK_KEYS = []
    client.force_login(user)
    page = client.get("/hooks/").content.decode()
    assert "Webhooks cannot be created" in page and "TEKTON_WEBHOOK_KEY" in page
    answer = client.post(
        "/hooks/new/", {"name": "x", "url": "http://127.0.0.1:9/", "events": ["run.failed"]}
    )
    assert "TEKTON_WEBHOOK_KEY is not set" in answer.content.decode()


def test_htmx_create_gets_the_partial(client, user):
    client.force_login(user)
    answer = client.post(
        "/hooks/new/",
        {"name": "x", "url": "http://127.0.0.1:9/", "events": ["run.failed"]},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="hooks-main",
    )
    page = answer.content.decode()
    assert page.lstrip().startswith('<div id="hooks-main">')
    assert "<html" not in page


def test_others_cannot_pause_or_delete_from_the_page(client, user, django_user_model):
    hook, _ = hook_create(owner=user, name="mine", url="http://127.0.0.1:9/", events=["run.failed"])
    other = django_user_model.objects.create_user("mallory", password="pw-for-tests-only")
    client.force_login(other)
    assert client.post(f"/hooks/{hook.pk}/delete/").status_code == 404
    assert client.post(f"/hooks/{hook.pk}/pause/").status_code == 404
    hook.refresh_from_db()
    assert hook.is_active


def test_admin_never_shows_the_secret(client, staff_user, user):
    staff_user.is_superuser = True
    staff_user.save()
    hook, secret = hook_create(
        owner=user, name="m", url="http://127.0.0.1:9/", events=["run.failed"]
    )
    client.force_login(staff_user)
    page = client.get(f"/admin/notifications/hook/{hook.pk}/change/").content.decode()
    assert "secret_hint" in page or hook.secret_hint in page
    assert secret not in page and hook.secret_encrypted not in page
