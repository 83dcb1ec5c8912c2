"""Liveness (`/healthz`) and readiness (`/readyz`) for load balancers and orchestrators.

`/healthz` says the process answers; `/readyz` says it can serve: the database answers a
query and, in celery mode, the broker accepts a connection. Both need no credentials and
say nothing about the services beyond "ok" or "unreachable".

A load balancer probes by address, over plain HTTP: `HealthProbeMiddleware` answers these
two paths before the host check and the HTTPS redirect, so a probe to
`http://10.0.0.5:8000/readyz` neither gets 400 (host not in TEKTON_ALLOWED_HOSTS) nor a
redirect to https.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse

from runs.health import broker_check
from tekton_site.errors import ServiceUnavailable

logger = logging.getLogger("tekton.site.health")

PROBE_PATHS = ("/healthz", "/readyz")


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True
    except DatabaseError as exc:
        logger.warning("readiness: the database is unreachable: %s", exc)
        return False


def _broker_state() -> str:
    from django.conf import settings

    if settings.TEKTON_EXECUTION != "celery":
        return "not used"
    try:
        broker_check()
    except ServiceUnavailable:
        return "unreachable"
    return "ok"


def readiness() -> tuple[bool, dict[str, str]]:
    """(ready, {"database": "ok" | "unreachable", "broker": "ok" | "unreachable" | "not used"})."""
    checks = {
        "database": "ok" if _database_ok() else "unreachable",
        "broker": _broker_state(),
    }
    return all(v in ("ok", "not used") for v in checks.values()), checks


def readyz(request: HttpRequest) -> JsonResponse:
    ready, checks = readiness()
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


class HealthProbeMiddleware:
    """Answers /healthz and /readyz first (see the module docstring); everything else
    goes on down the stack."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/healthz":
            return healthz(request)
        if request.path == "/readyz":
            return readyz(request)
        return self.get_response(request)
