"""Follow a run's Server-Sent Events the way a browser's EventSource does: resume with
Last-Event-ID after a drop, stop on 204 or after the run's final event, and say what
happened (a Status item) so the screen can tell the person.

Deltas (`stage.delta`, asked for with ?deltas=1) carry no SSE id, so they never move the
resume point: a reconnect loses the partial text of a call, never a stored event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from tui.client import ApiClient, error_from_exception, error_from_response

logger = logging.getLogger("tekton.tui.stream")

FINAL_KINDS = ("run.finished", "run.failed", "run.cancelled")
# The server sends a heartbeat every TEKTON_SSE_HEARTBEAT_SECONDS (15 by default): three
# missed ones is a dead connection that TCP has not noticed yet.
STALL_SECONDS = 45.0
MAX_BACKOFF_SECONDS = 10.0
# Answers that another try will not change.
FINAL_STATUSES = (400, 401, 403, 404)


@dataclass(frozen=True)
class Event:
    """One event: `seq` is None for ephemeral ones (deltas)."""

    seq: int | None
    kind: str
    stage: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Status:
    """What the stream is doing: live, reconnecting, ended or error, with a line to show."""

    state: str
    text: str


def event_parse(name: str, event_id: str, data: str) -> Event | None:
    """An SSE message as an Event, or None when its data is not a JSON object."""
    if not data:
        return None  # a `retry:` line alone, or an empty message
    try:
        body = json.loads(data)
    except json.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    kind = str(body.get("kind") or name)
    # The SSE parser repeats the last id on messages without one (as EventSource does), so
    # a delta's id is never its own: only stored events have a seq.
    seq = None
    if kind != "stage.delta":
        if isinstance(body.get("seq"), int):
            seq = body["seq"]
        elif event_id.isdigit():
            seq = int(event_id)
    payload = body.get("payload") if isinstance(body.get("payload"), dict) else body
    return Event(seq=seq, kind=kind, stage=str(body.get("stage") or ""), payload=payload)


class RunStream:
    """`async for item in RunStream(client, run_id, after=seq)`: Events and Statuses."""

    def __init__(
        self,
        client: ApiClient,
        run_id: int,
        *,
        after: int = 0,
        deltas: bool = True,
        stall_seconds: float = STALL_SECONDS,
    ):
        self.client = client
        self.run_id = run_id
        self.last_seq = after
        self.deltas = deltas
        self.stall_seconds = stall_seconds
        self.connections = 0
        self.retry_seconds = 1.0

    async def __aiter__(self) -> AsyncIterator[Event | Status]:
        failures = 0
        dropped_at: int | None = None
        url = f"/api/runs/{self.run_id}/events"
        while True:
            # aconnect_sse writes Accept into the dict it is given: a fresh one every time.
            headers = {"Accept": "text/event-stream"}
            if self.last_seq:
                headers["Last-Event-ID"] = str(self.last_seq)
            timeout = httpx.Timeout(10.0, read=self.stall_seconds)
            params = {"deltas": "1"} if self.deltas else {}
            problem = ""
            try:
                async with aconnect_sse(
                    self.client.http, "GET", url, headers=headers, params=params, timeout=timeout
                ) as source:
                    self.connections += 1
                    response = source.response
                    if response.status_code == 204:
                        yield Status("ended", "the run is finished; no more events")
                        return
                    if response.status_code >= 400:
                        await response.aread()
                        error = error_from_response(response)
                        if response.status_code in FINAL_STATUSES:
                            yield Status("error", f"event stream: {error}")
                            return
                        raise _Retryable(str(error))
                    if dropped_at is not None:
                        yield Status(
                            "live",
                            f"reconnected after a dropped stream; resumed after event {dropped_at}",
                        )
                        dropped_at = None
                    else:
                        yield Status("live", "live")
                    async for sse in source.aiter_sse():
                        if sse.retry is not None:
                            self.retry_seconds = max(0.1, sse.retry / 1000)
                        event = event_parse(sse.event, sse.id, sse.data)
                        if event is None:
                            continue
                        failures = 0
                        if event.seq is not None:
                            if event.seq <= self.last_seq:
                                continue  # a replay overlap: already applied
                            self.last_seq = event.seq
                        yield event
                        if event.kind in FINAL_KINDS:
                            yield Status("ended", f"the run ended ({event.kind})")
                            return
                # The server ends a stream after TEKTON_SSE_MAX_SECONDS on purpose; going on
                # from the last event is the normal case, not a drop.
                await asyncio.sleep(self.retry_seconds)
                continue
            except _Retryable as exc:
                problem = str(exc)
            except (httpx.HTTPError, SSEError) as exc:
                problem = str(error_from_exception(exc, self.client.base_url))
            failures += 1
            dropped_at = self.last_seq
            wait = min(MAX_BACKOFF_SECONDS, self.retry_seconds * 2 ** (failures - 1))
            yield Status(
                "reconnecting",
                f"stream dropped after event {self.last_seq} ({problem}); "
                f"reconnecting in {wait:g} s with Last-Event-ID {self.last_seq}",
            )
            await asyncio.sleep(wait)


class _Retryable(Exception):
    """An answer worth another try (5xx, 429)."""
