"""Celery tasks of notifications: ids in, safe to run twice (attempts are claimed)."""

from __future__ import annotations

from celery import shared_task

from notifications.services import delivery_attempt


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def delivery_send_task(self, delivery_id: int) -> None:
    """One attempt of a delivery; when it should be tried again, a retry with the backoff
    delivery_attempt asked for (the attempt count on the row bounds the retries)."""
    delay = delivery_attempt(delivery_id=int(delivery_id))
    if delay is not None:
        raise self.retry(countdown=delay)
