"""Liveness and readiness: answered before host checks and the HTTPS redirect."""

from __future__ import annotations

import pytest
from django.db import DatabaseError

from tekton_site import health


@pytest.mark.django_db
def test_readyz_reports_database_and_broker(client):
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "checks": {"database": "ok", "broker": "not used"}}


@pytest.mark.django_db
def test_readyz_is_503_when_the_database_fails(client, mocker):
    cursor = mocker.patch.object(health.connections["default"], "cursor")
    cursor.side_effect = DatabaseError("connection refused")
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["database"] == "unreachable"
    assert "refused" not in answer.content.decode()


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_is_unreachable(client, settings):
    from tests.streams.live import free_port

    settings.TEKTON_EXECUTION = "celery"
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.TEKTON_BROKER_CHECK_TIMEOUT_S = 0.5
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "broker": "unreachable"},
    }


@pytest.mark.django_db
def test_probes_answer_an_unknown_host_over_plain_http(client, settings):
    # A load balancer probes by address; with HTTPS on, anything else is redirected.
    settings.ALLOWED_HOSTS = ["tekton.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    for path in ("/healthz", "/readyz"):
        answer = client.get(path, HTTP_HOST="10.0.0.5:8000")
        assert answer.status_code == 200, path
    assert client.get("/accounts/login/", HTTP_HOST="10.0.0.5:8000").status_code == 400
    assert client.get("/accounts/login/", HTTP_HOST="tekton.example.com").status_code == 301
