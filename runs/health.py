"""Reachability of the services a run needs before it is accepted (celery mode).

The API calls `broker_check()` before creating or resuming a run, so a down broker answers
503 naming it instead of a run that silently never starts.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

_SERVICE_NAMES = {
    "redis": "redis",
    "rediss": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "pyamqp": "rabbitmq",
}


class ServiceUnavailable(Exception):
    """A service Tekton depends on does not answer. `service` names it ("redis"); the
    message never contains its URL (which may hold a password)."""

    def __init__(self, service: str, message: str):
        super().__init__(message)
        self.service = service
        self.message = message

    def __str__(self) -> str:
        return self.message


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
