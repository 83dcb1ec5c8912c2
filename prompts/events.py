"""Prompt invocation events: the one place that records them, and publishes them once the
transaction commits (through runs.events, the project's one sender to the channel layer).

As with runs, a PromptEvent row is the record and the channel-layer message only a hint:
the stream (runs.event_hub with PROMPT_EVENTS) reconciles by `seq` from the database, so
a dropped hint or a reconnect loses nothing.

Kinds, in the order an invocation makes them:
- `prompt.queued` (the API or the page asked; `chain`, `intent`) or `prompt.started`
  (a worker claimed it, or the CLI began it; `chain`, `intent`);
- `prompt.step` an agno step begins (`role`, `model`);
- `prompt.attempt` a model of the chain answered or failed (`model`, `outcome`,
  `detail`, `calls`, `duration_s`);
- `prompt.fallback` the chain moves on (`from`, `to`, `reason`);
- `prompt.answer` the answer so far grew (`text` to write at `offset` of what was sent
  before: redacted, its last characters held back until the call ends);
- `prompt.finished` the end, always last (`status` ok/failed/dry-run, `outcome`,
  `error`, `provider`, `model`, `tokens_in`, `tokens_out`, `cost_usd`, `duration_s`).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from prompts.models import PromptEvent, PromptInvocation
from swarm.redact import redact

logger = logging.getLogger("tekton.prompts.events")

FINAL_KIND = "prompt.finished"
PROMPT_EVENT_KINDS = (
    "prompt.queued",
    "prompt.started",
    "prompt.step",
    "prompt.attempt",
    "prompt.fallback",
    "prompt.answer",
    FINAL_KIND,
)


def prompt_group(invocation_id: int) -> str:
    """The channel-layer group that carries an invocation's event hints, in this
    installation's namespace (as runs.events.run_group)."""
    return f"{settings.TEKTON_NAMESPACE}.prompt.{invocation_id}"


def prompt_events_record(
    *, invocation_id: int, items: list[tuple[str, dict[str, Any] | None]]
) -> list[PromptEvent]:
    """Write events of one invocation, in order, in one transaction; publish on commit.

    `items` are (kind, payload); payloads are redacted. The seqs come from one conditional
    UPDATE of the invocation's counter (it takes the row's write lock), so seq has no gap
    and no duplicate. Raises PromptInvocation.DoesNotExist when the invocation is gone."""
    if not items:
        return []
    n = len(items)
    with transaction.atomic():
        updated = PromptInvocation.objects.filter(pk=invocation_id).update(
            event_seq=F("event_seq") + n
        )
        if not updated:
            raise PromptInvocation.DoesNotExist(f"prompt invocation {invocation_id} is gone")
        last = PromptInvocation.objects.values_list("event_seq", flat=True).get(pk=invocation_id)
        rows = PromptEvent.objects.bulk_create(
            PromptEvent(
                invocation_id=invocation_id,
                seq=last - n + 1 + i,
                kind=kind,
                payload=redact(dict(payload or {})),
            )
            for i, (kind, payload) in enumerate(items)
        )
        transaction.on_commit(lambda: prompt_events_publish(rows))
    return rows


def prompt_event_dict(event: PromptEvent) -> dict[str, Any]:
    """What a stream subscriber receives (and the SSE `data`)."""
    return {
        "seq": event.seq,
        "kind": event.kind,
        "payload": event.payload,
        "created_at": event.created_at.isoformat() if event.created_at else None,
    }


def prompt_events_publish(rows: list[PromptEvent]) -> None:
    """Hint each event's group. Never raises: the database is the record."""
    from runs.events import group_messages_send

    if not rows:
        return
    problem = group_messages_send(
        [
            (
                prompt_group(row.invocation_id),
                {"type": "prompt.event", "invocation_id": row.invocation_id}
                | prompt_event_dict(row),
            )
            for row in rows
        ]
    )
    if problem:
        logger.warning(
            "could not publish prompt %s events %s..%s: %s",
            rows[0].invocation_id,
            rows[0].seq,
            rows[-1].seq,
            problem,
        )
