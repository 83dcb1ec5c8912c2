"""Prometheus exposition: `/metrics` on the web process (behind TEKTON_METRICS_TOKEN) and
an exporter on a bound address for any process (TEKTON_METRICS_PORT; workers use it).

Every process exposes its own: the threads pool runs a worker's stages in one process, so
one exporter per worker process is exact, with no shared multiprocess directory to clean
up on restarts. Scrape each web and worker process.
"""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

logger = logging.getLogger("tekton.site.metrics")

_scrape_registry: CollectorRegistry | None = None


class _ClosingCollector:
    """The database gauges, closing the connection a scrape thread opened."""

    def __init__(self, inner):
        self.inner = inner

    def collect(self):
        try:
            yield from self.inner.collect()
        finally:
            if not connection.in_atomic_block:
                connection.close()


def scrape_registry() -> CollectorRegistry:
    """The gauges read at scrape time (runs.metrics.TektonCollector), apart from the
    process-wide registry so that only the web process reads them."""
    global _scrape_registry
    if _scrape_registry is None:
        from runs.metrics import TektonCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(TektonCollector())
        _scrape_registry = registry
    return _scrape_registry


def exposition(*, with_database: bool) -> bytes:
    import runs.metrics  # noqa: F401  its counters register on import (runs.apps defers it)

    body = generate_latest(REGISTRY)
    if with_database:
        body += generate_latest(scrape_registry())
    return body


def metrics_view(request: HttpRequest) -> HttpResponse:
    """`/metrics`: 404 unless TEKTON_METRICS_TOKEN is set; then `Authorization: Bearer
    <token>` or 401."""
    token = settings.TEKTON_METRICS_TOKEN
    if not token:
        return HttpResponse("metrics are off: set TEKTON_METRICS_TOKEN\n", status=404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return HttpResponse(
            "a Bearer token is needed\n", status=401, headers={"WWW-Authenticate": "Bearer"}
        )
    return HttpResponse(exposition(with_database=True), content_type=CONTENT_TYPE_LATEST)


def exporter_start(*, with_database: bool):
    """Serve this process's metrics on TEKTON_METRICS_ADDR:TEKTON_METRICS_PORT when a port
    is set (a daemon thread). Returns the HTTP server (None when no port is set)."""
    port = settings.TEKTON_METRICS_PORT
    if not port:
        return None
    from prometheus_client import start_http_server

    import runs.metrics  # noqa: F401  its counters register on import (runs.apps defers it)

    registry = REGISTRY
    if with_database:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Both())
    server, _thread = start_http_server(port, addr=settings.TEKTON_METRICS_ADDR, registry=registry)
    logger.info("metrics on http://%s:%s/metrics", settings.TEKTON_METRICS_ADDR, port)
    return server


class _Both:
    def collect(self):
        yield from REGISTRY.collect()
        yield from _ClosingCollector(scrape_registry()).collect()
