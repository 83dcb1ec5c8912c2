"""Who may call the API: bearer tokens, the session, and what happens without them."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.services import (
    TokenError,
    token_authenticate,
    token_create,
    token_hash,
    token_list,
    token_revoke,
)
from tests.api.conftest import bearer

# (method, url) of every endpoint that needs a user.
PROTECTED = [
    ("get", "/api/runs/"),
    ("post", "/api/runs/"),
    ("get", "/api/runs/1/"),
    ("post", "/api/runs/1/cancel/"),
    ("post", "/api/runs/1/resume/"),
    ("post", "/api/runs/1/stages/plan/approve/"),
    ("post", "/api/runs/1/stages/plan/retry/"),
    ("post", "/api/runs/1/stages/plan/abort/"),
    ("get", "/api/runs/1/artifacts/"),
    ("get", "/api/runs/1/artifacts/plan.json"),
    ("get", "/api/runs/1/transcript/"),
    ("get", "/api/runs/1/events"),
    ("get", "/api/config/profiles/"),
    ("post", "/api/config/profiles/"),
    ("get", "/api/config/profiles/diamond-v5/"),
    ("put", "/api/config/profiles/diamond-v5/"),
    ("patch", "/api/config/profiles/diamond-v5/"),
    ("delete", "/api/config/profiles/diamond-v5/"),
    ("get", "/api/system/checks/"),
    ("post", "/api/system/checks/"),
]


def call(client: APIClient, method: str, url: str):
    return getattr(client, method)(url, {}, format="json") if method != "get" else client.get(url)


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url"), PROTECTED)
def test_it_answers_401_without_credentials(method, url):
    response = call(APIClient(), method, url)
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Bearer"
    assert "detail" in response.json()


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url"), PROTECTED)
def test_it_answers_401_for_a_wrong_token(method, url, user):
    response = call(bearer("tkn_" + "x" * 43), method, url)
    assert response.status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url"), PROTECTED[:3] + PROTECTED[12:13])
def test_it_answers_401_for_a_revoked_token(method, url, user):
    row, raw = token_create(user=user)
    token_revoke(token_id=row.pk)
    assert call(bearer(raw), method, url).status_code == 401


@pytest.mark.django_db
def test_it_answers_401_for_an_inactive_user(user, token):
    user.is_active = False
    user.save()
    assert bearer(token).get("/api/runs/").status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer not-a-tekton-token"])
def test_it_answers_401_for_a_malformed_header(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/runs/").status_code == 401


@pytest.mark.django_db
def test_failed_authentication_is_logged_without_the_token(caplog, user):
    _, raw = token_create(user=user)
    wrong = raw[:-4] + "AAAA"
    with caplog.at_level(logging.WARNING, logger="tekton.auth"):
        assert bearer(wrong).get("/api/runs/").status_code == 401
    records = [r for r in caplog.records if r.name == "tekton.auth"]
    assert len(records) == 1
    text = records[0].getMessage()
    assert "authentication failed" in text and "/api/runs/" in text
    assert wrong not in text and wrong[4:12] not in text and raw not in text


@pytest.mark.django_db
def test_a_valid_token_authenticates_and_records_its_use(api, user, token):
    response = api.get("/api/runs/")
    assert response.status_code == 200
    row = ApiToken.objects.get(token_hash=token_hash(token))
    assert row.last_used_at is not None


@pytest.mark.django_db
def test_the_session_is_accepted_and_writes_need_csrf(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/runs/").status_code == 200
    response = client.post("/api/runs/1/cancel/", {}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


@pytest.mark.django_db
def test_healthz_schema_and_docs_need_no_credentials():
    client = APIClient()
    assert client.get("/healthz").json() == {"status": "ok"}
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/runs/{run_id}/" in schema.json()["paths"]
    assert schema.json()["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html
    # Served from the installed sidecar, never a CDN.
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html
    assert "/static/drf_spectacular_sidecar/" in html


@pytest.mark.django_db
def test_an_unknown_api_url_is_a_json_404(api):
    response = api.get("/api/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {"detail": "not found"}


# --- the token services ------------------------------------------------------------------


@pytest.mark.django_db
def test_token_create_stores_only_a_hash(user):
    row, raw = token_create(user=user, name="ci")
    assert raw.startswith("tkn_") and len(raw) >= 4 + 43
    assert row.token_hash == token_hash(raw) and raw not in row.token_hash
    assert row.prefix == raw[4:12] and row.name == "ci"
    stored = ApiToken.objects.filter(pk=row.pk).values().get()
    assert all(raw not in str(value) for value in stored.values())
    assert token_authenticate(raw=raw).pk == row.pk


@pytest.mark.django_db
def test_tokens_are_unique(user):
    raws = {token_create(user=user)[1] for _ in range(20)}
    assert len(raws) == 20


@pytest.mark.django_db
def test_token_list_filters_by_user(user, staff_user):
    mine, _ = token_create(user=user)
    token_create(user=staff_user)
    assert [t.pk for t in token_list(user=user)] == [mine.pk]
    assert token_list().count() == 2


@pytest.mark.django_db
def test_token_revoke_by_prefix_and_twice(user):
    row, raw = token_create(user=user)
    revoked = token_revoke(prefix=f"tkn_{row.prefix}")
    assert revoked.revoked_at is not None
    assert token_authenticate(raw=raw) is None
    again = token_revoke(token_id=row.pk)
    assert again.revoked_at == revoked.revoked_at


@pytest.mark.django_db
def test_token_revoke_refuses_unknown_and_ambiguous(user):
    with pytest.raises(TokenError, match="no token with id 999"):
        token_revoke(token_id=999)
    with pytest.raises(TokenError, match="exactly one"):
        token_revoke()
    a, _ = token_create(user=user)
    b, _ = token_create(user=user)
    ApiToken.objects.filter(pk=b.pk).update(prefix=a.prefix[:4] + "zzzz")
    with pytest.raises(TokenError, match="several tokens"):
        token_revoke(prefix=a.prefix[:4])


@pytest.mark.django_db
def test_token_create_refuses_inactive_users(user):
    user.is_active = False
    with pytest.raises(TokenError, match="inactive"):
        token_create(user=user)


@pytest.mark.django_db
def test_last_used_is_refreshed_at_most_once_a_minute(user):
    row, raw = token_create(user=user)
    token_authenticate(raw=raw)
    first = ApiToken.objects.get(pk=row.pk).last_used_at
    token_authenticate(raw=raw)
    assert ApiToken.objects.get(pk=row.pk).last_used_at == first
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=first - timedelta(minutes=5))
    token_authenticate(raw=raw)
    assert ApiToken.objects.get(pk=row.pk).last_used_at > first
