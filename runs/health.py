"""Reachability of the services a run needs before it is accepted (celery mode).

The API and the pages call `services_check()` before creating or resuming a run, so a down
broker, or a broker with no worker listening, answers 503 naming it instead of a run that
silently never starts.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

from django.conf import settings

from tekton_site.errors import ServiceUnavailable

_SERVICE_NAMES = {
    "redis": "redis",
    "rediss": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "pyamqp": "rabbitmq",
}


def broker_service_name(url: str) -> str:
    scheme = urlsplit(url).scheme.split("+")[0].lower()
    return _SERVICE_NAMES.get(scheme, scheme or "broker")


def broker_check(*, timeout_s: float | None = None) -> None:
    """In celery mode, open (and close) one short connection to CELERY_BROKER_URL; raise
    ServiceUnavailable when it fails. Does nothing in inline mode."""
    if settings.TEKTON_EXECUTION != "celery":
        return
    from kombu import Connection

    url = settings.CELERY_BROKER_URL
    service = broker_service_name(url)
    timeout = settings.TEKTON_BROKER_CHECK_TIMEOUT_S if timeout_s is None else timeout_s
    try:
        with Connection(url, connect_timeout=timeout, transport_options={"max_retries": 0}) as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)
    except Exception:
        raise ServiceUnavailable(
            service, f"the message broker ({service}) is unreachable; no worker can run the stages"
        ) from None


# A worker that answered a ping this recently is taken to be there: the ping itself waits
# its whole timeout, which a request should pay only when something is wrong.
WORKERS_SEEN_TTL_S = 30.0
_workers_seen_at = 0.0
_workers_lock = threading.Lock()


def queue_workers(app, conn, *, timeout_s: float) -> tuple[list[str], list[str]]:
    """(workers that consume TEKTON_QUEUE, every worker that answered), by asking each
    worker for its queues: a worker of another application (or of another Tekton with its
    own queue) on the same broker answers a ping too, but would never run these stages."""
    try:
        replies = app.control.inspect(timeout=timeout_s, connection=conn).active_queues() or {}
    except Exception:
        replies = {}
    consuming = sorted(
        name
        for name, queues in replies.items()
        if any(q.get("name") == settings.TEKTON_QUEUE for q in queues or [])
    )
    return consuming, sorted(replies)


def workers_check(*, timeout_s: float = 1.0) -> None:
    """In celery mode, make sure at least one worker consumes TEKTON_QUEUE (remembered for
    WORKERS_SEEN_TTL_S); raise ServiceUnavailable("workers", ...) when none does."""
    global _workers_seen_at
    if settings.TEKTON_EXECUTION != "celery":
        return
    with _workers_lock:
        if time.monotonic() - _workers_seen_at < WORKERS_SEEN_TTL_S:
            return
    from tekton_site.celery import app

    try:
        with app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
            consuming, answered = queue_workers(app, conn, timeout_s=timeout_s)
    except Exception:
        consuming, answered = [], []
    if not consuming:
        others = f" ({len(answered)} other worker(s) answered, on other queues)" if answered else ""
        raise ServiceUnavailable(
            "workers",
            f"no Celery worker consumes the queue {settings.TEKTON_QUEUE!r}{others}; start one "
            "with `celery -A tekton_site worker` and the same TEKTON_QUEUE / TEKTON_NAMESPACE",
        )
    with _workers_lock:
        _workers_seen_at = time.monotonic()


def services_check() -> None:
    """What a run needs before it is accepted in celery mode: the broker, then a worker."""
    broker_check()
    workers_check()
