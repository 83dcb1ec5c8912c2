"""Run events: the one place that records them and publishes them to the channel layer.

A RunEvent row is the record; the channel-layer message is only a hint (at-most-once),
so subscribers reconcile by `seq` from the database.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F

from runs.models import Run, RunEvent
from swarm.redact import redact

logger = logging.getLogger("tekton.runs.events")

FINAL_KINDS = ("run.finished", "run.failed", "run.cancelled")


def run_group(run_id: int) -> str:
    """The channel-layer group that carries a run's events."""
    return f"tekton.run.{run_id}"


def event_record(
    *, run_id: int, kind: str, stage: str = "", payload: dict[str, Any] | None = None
) -> RunEvent:
    """Write the next event of a run and publish it once the transaction commits.

    The seq comes from a conditional `UPDATE ... SET event_seq = event_seq + 1` on the run
    row, which takes the row's write lock, so concurrent writers (review and threat side
    by side) serialise and seq has no gap and no duplicate. The payload is redacted.
    Raises Run.DoesNotExist when the run is gone.
    """
    with transaction.atomic():
        updated = Run.objects.filter(pk=run_id).update(event_seq=F("event_seq") + 1)
        if not updated:
            raise Run.DoesNotExist(f"run {run_id} does not exist")
        seq = Run.objects.values_list("event_seq", flat=True).get(pk=run_id)
        event = RunEvent.objects.create(
            run_id=run_id, seq=seq, kind=kind, stage=stage, payload=redact(dict(payload or {}))
        )
        transaction.on_commit(lambda: event_publish(event))
    return event


def event_message(event: RunEvent) -> dict[str, Any]:
    """The channel-layer message for an event (also what JSON subscribers receive)."""
    return {
        "type": "run.event",
        "run_id": event.run_id,
        "seq": event.seq,
        "kind": event.kind,
        "stage": event.stage,
        "payload": event.payload,
        "created_at": event.created_at.isoformat() if event.created_at else None,
    }


def event_publish(event: RunEvent) -> None:
    """Send an event to its run's group. Never raises: the database is the record."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        async_to_sync(layer.group_send)(run_group(event.run_id), event_message(event))
    except Exception as exc:  # a down Redis must not fail the stage that wrote the event
        logger.warning(
            "could not publish run %s event %s (%s): %s",
            event.run_id,
            event.seq,
            event.kind,
            redact(str(exc)),
        )
