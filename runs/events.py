"""Run events: the one place that records them and publishes them to the channel layer.

A RunEvent row is the record; the channel-layer message is only a hint (at-most-once),
so subscribers reconcile by `seq` from the database.

Deltas (`stage.delta`, an agent's text while its call streams) are the exception: they are
published only, never stored, and carry their text in the message (no seq). Losing one
costs nothing lasting: the stored `stage.progress` message of the call follows.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F
from django.dispatch import Signal

from runs.models import Run, RunEvent
from swarm.redact import redact

logger = logging.getLogger("tekton.runs.events")

FINAL_KINDS = ("run.finished", "run.failed", "run.cancelled")

# Sent inside the recording transaction with the new rows (`events`, in seq order), so a
# receiver's writes (notification deliveries) commit or roll back with the events, and
# its side effects wait for the commit (transaction.on_commit). A receiver must write in
# its own savepoint and must not raise for its own failures; a raising receiver is logged
# and the events are recorded all the same.
events_recorded = Signal()


def run_group(run_id: int) -> str:
    """The channel-layer group that carries a run's events."""
    return f"tekton.run.{run_id}"


def event_record(
    *, run_id: int, kind: str, stage: str = "", payload: dict[str, Any] | None = None
) -> RunEvent:
    """Write the next event of a run and publish it once the transaction commits.

    See events_record; raises Run.DoesNotExist when the run is gone.
    """
    return events_record(run_id=run_id, items=[(kind, stage, payload)])[0]


def events_record(
    *, run_id: int, items: list[tuple[str, str, dict[str, Any] | None]]
) -> list[RunEvent]:
    """Write several events of one run, in order, in one transaction; publish on commit.

    `items` are (kind, stage, payload). The seqs come from one conditional
    `UPDATE ... SET event_seq = event_seq + n` on the run row, which takes the row's write
    lock, so concurrent writers (review and threat side by side) serialise and seq has no
    gap and no duplicate. Payloads are redacted. Raises Run.DoesNotExist when the run is gone.
    """
    if not items:
        return []
    n = len(items)
    with transaction.atomic():
        updated = Run.objects.filter(pk=run_id).update(event_seq=F("event_seq") + n)
        if not updated:
            raise Run.DoesNotExist(f"run {run_id} does not exist")
        last = Run.objects.values_list("event_seq", flat=True).get(pk=run_id)
        rows = RunEvent.objects.bulk_create(
            RunEvent(
                run_id=run_id,
                seq=last - n + 1 + i,
                kind=kind,
                stage=stage,
                payload=redact(dict(payload or {})),
            )
            for i, (kind, stage, payload) in enumerate(items)
        )
        for receiver, result in events_recorded.send_robust(sender=RunEvent, events=rows):
            if isinstance(result, Exception):
                logger.warning("events receiver %r failed: %s", receiver, redact(str(result)))
        transaction.on_commit(lambda: events_publish(rows))
    return rows


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


DELTA_KIND = "stage.delta"


def deltas_message(run_id: int, items: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The channel-layer message of a run's coalesced deltas: one message for all the calls
    that streamed since the last flush (so 100 runs of 3 concurrent calls cost 100
    messages per flush, not 300). `deltas` are {"stage", "payload"}; no seq."""
    return {
        "type": "run.delta",
        "run_id": run_id,
        "kind": DELTA_KIND,
        "deltas": [{"stage": stage, "payload": payload} for stage, payload in items],
    }


def deltas_unpack(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A delta message as the event dicts subscribers get: {"kind", "stage", "payload"}."""
    out = []
    for item in message.get("deltas") or []:
        if isinstance(item, dict) and isinstance(item.get("payload"), dict):
            out.append(
                {
                    "kind": DELTA_KIND,
                    "stage": str(item.get("stage") or ""),
                    "payload": item["payload"],
                }
            )
    return out


def deltas_publish(*, run_id: int, items: list[tuple[str, dict[str, Any]]]) -> None:
    """Send a run's streamed text to its group in one message: `items` are
    (stage, payload) as swarm.deltas.DeltaCoalescer makes them (already redacted, with
    the tail held back). Ephemeral: no row, no seq. Never raises."""
    if not items:
        return
    problem = _send([deltas_message(run_id, items)])
    if problem:
        logger.warning("could not publish run %s deltas: %s", run_id, problem)


def event_publish(event: RunEvent) -> None:
    """Send one event to its run's group. Never raises: the database is the record."""
    events_publish([event])


def events_publish(rows: list[RunEvent]) -> None:
    """Send events to their runs' groups, in order, in one trip through async_to_sync
    (each trip costs a thread and an event loop). Never raises: the database is the record,
    and a down Redis must not fail the stage that wrote the events."""
    if not rows:
        return
    problem = _send(rows)
    if problem:
        first = rows[0]
        logger.warning(
            "could not publish run %s events %s..%s: %s",
            first.run_id,
            first.seq,
            rows[-1].seq,
            problem,
        )


def _send(items: list[Any]) -> str:
    """group_send each item (a RunEvent, or a ready message with its run_id) to its run's
    group. Returns "" or what went wrong, redacted."""
    return group_messages_send(
        [
            (run_group(item.run_id), event_message(item))
            if isinstance(item, RunEvent)
            else (run_group(item["run_id"]), item)
            for item in items
        ]
    )


def group_messages_send(messages: list[tuple[str, dict[str, Any]]]) -> str:
    """Send (group, message) pairs, in order, in one async_to_sync trip: the one caller of
    group_send in the project (prompts.events publishes an invocation's events through
    it). Returns "" or what went wrong, redacted; never raises."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return ""

        async def send_all() -> None:
            for group, message in messages:
                await layer.group_send(group, message)

        async_to_sync(send_all)()
        return ""
    except Exception as exc:
        return redact(str(exc)) or type(exc).__name__
