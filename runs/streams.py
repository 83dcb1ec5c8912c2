"""`GET /api/runs/<id>/events`: a run's events as Server-Sent Events or as a JSON page.

With `Accept: text/event-stream` the answer is a stream: every event after `Last-Event-ID`
(or `?after=`) replayed from the database, then the live ones as they are committed (see
`runs.event_hub`), each as `id: <seq>`, `event: <kind>`, `data: <json>`; a `: heartbeat`
comment every TEKTON_SSE_HEARTBEAT_SECONDS of silence keeps proxies from closing it. The
stream ends after the run's final event, or after TEKTON_SSE_MAX_SECONDS (default 300;
the client reconnects with Last-Event-ID and loses nothing); a reconnect to a finished run
with nothing left to send answers 204, which tells an EventSource to stop reconnecting. Otherwise: a JSON
page of events (`?after=SEQ&limit=N`).

`?deltas=1` adds the agents' streamed text as `event: stage.delta` messages without an
`id:` (they are not stored, so the resume point stays the last stored seq); off by
default, so scripts get the stored events only. Engines stream a run's text only while
someone follows it (runs.events.deltas_watch): the first subscriber's text starts within
a second, with each call under way from its first word.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from runs.event_hub import (
    HEARTBEAT,
    RUN_EVENTS,
    EventSource,
    encoded_once,
    event_dict,
    event_json,
    hub,
)
from runs.models import Run
from runs.selectors import run_events_after, run_last_event, runs_visible_to

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


# What a client waits before reconnecting after the stream ends (SSE `retry:`).
RECONNECT_MS = 1000


class EventStreamRenderer(BaseRenderer):
    """Lets content negotiation accept `text/event-stream`. The stream itself is built by
    the view; this renders only what DRF answers on its own (401, 404, 400) as one
    `error` event."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        return f"event: error\ndata: {json.dumps(data, default=str)}\n\n".encode()


def _sse(event: dict[str, Any]) -> bytes:
    data = event_json(event)
    if event.get("seq") is None:  # a delta: no id, so it never becomes a resume point
        return f"event: {event['kind']}\ndata: {data}\n\n".encode()
    return f"id: {event['seq']}\nevent: {event['kind']}\ndata: {data}\n\n".encode()


def sse_format(event: dict[str, Any]) -> bytes:
    """One SSE message, built once per event and shared by every stream. json.dumps
    escapes newlines, so `data:` is always one line."""
    return encoded_once(event, "sse", _sse)


async def sse_stream(
    run_id: int,
    after_seq: int,
    heartbeat_seconds: float,
    max_seconds: float,
    *,
    deltas: bool = False,
    source: EventSource = RUN_EVENTS,
) -> AsyncIterator[bytes]:
    """The body of the stream (of a run, or of another `source`'s object); runs on the
    event loop, reads through the hub's pool.

    A stream lasts at most `max_seconds`: proxies cut long-lived responses anyway, and the
    client's reconnect with Last-Event-ID loses nothing, so ending it on purpose keeps
    every connection's life bounded and predictable."""
    deadline = time.monotonic() + max_seconds
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    async with (
        hub().subscribe(run_id, after_seq, deltas=deltas, source=source) as sub,
        contextlib.aclosing(sub.batches(min(heartbeat_seconds, max_seconds))) as batches,
    ):
        async for batch in batches:
            # All that was ready goes in one write: one send through the server per wake.
            yield b": heartbeat\n\n" if batch is HEARTBEAT else b"".join(map(sse_format, batch))
            if time.monotonic() >= deadline:
                return


def last_event_id(request) -> int | None:
    """The SSE resume point a reconnecting client sent, or None; a malformed one is a 400."""
    raw = request.headers.get("Last-Event-ID")
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    if not raw.isdigit():
        raise serializers.ValidationError(
            {"Last-Event-ID": [f"must be an event seq (a whole number >= 0), got {raw[:40]!r}"]}
        )
    return int(raw)


class EventsQuerySerializer(serializers.Serializer):
    """The query of an events endpoint (a run's, an invocation's): `sse_events_schema`."""

    after = serializers.IntegerField(
        min_value=0, default=0, help_text="Return events with seq greater than this."
    )
    limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_LIMIT,
        default=DEFAULT_LIMIT,
        help_text="JSON page size (SSE ignores it).",
    )


class RunEventsQuerySerializer(EventsQuerySerializer):
    deltas = serializers.BooleanField(
        default=False,
        help_text="SSE only: also send the agents' streamed text as `stage.delta` messages "
        "(no id; not stored, not replayed).",
    )


class RunEventSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    kind = serializers.CharField()
    stage = serializers.CharField(allow_blank=True)
    payload = serializers.JSONField()
    created_at = serializers.DateTimeField(allow_null=True)


class RunEventsPageSerializer(serializers.Serializer):
    events = RunEventSerializer(many=True)
    next_after = serializers.IntegerField(
        allow_null=True,
        help_text="Pass as ?after= for the next page; null when no more events exist now.",
    )
    run_status = serializers.ChoiceField(choices=Run.Status.choices)


# Each Server-Sent Event, as a client parses it (OpenAPI 3.0 reads a text/event-stream
# schema as one event's): the data is a RunEvent, or an Error body for `event: error`.
SSE_KIND_PATTERN = r"^[a-z_]+\.[a-z_]+$"


def sse_event_schema(data_component: str, kinds: str) -> dict[str, Any]:
    """The OpenAPI schema of one event of a stream whose `data` is a `data_component`
    (a components/schemas name) and whose kinds are described by `kinds`."""
    return {
        "oneOf": [
            {
                "type": "object",
                "required": ["id", "event", "data"],
                "properties": {
                    "id": {
                        "type": "string",
                        "pattern": "^[0-9]+$",
                        "description": "The event's seq; send the last one as Last-Event-ID.",
                    },
                    "event": {
                        "type": "string",
                        "pattern": SSE_KIND_PATTERN,
                        "description": f"The event's kind: {kinds}",
                    },
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": f"#/components/schemas/{data_component}"},
                    },
                    "retry": {"type": "integer", "minimum": 0},
                },
            },
            {
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": {"type": "string", "enum": ["error"]},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": "#/components/schemas/Error"},
                    },
                },
            },
        ]
    }


LAST_EVENT_ID_PARAMETER = OpenApiParameter(
    "Last-Event-ID",
    {"type": "integer", "minimum": 0},
    OpenApiParameter.HEADER,
    required=False,
    description="SSE resume point (the last seq received); wins over ?after=.",
)


def sse_events_schema(
    *,
    operation_id: str,
    summary: str,
    query: type[serializers.Serializer],
    page: type[serializers.Serializer],
    data_component: str,
    kinds: str,
    subject: str,
    ends_after: str,
    description: str | None = None,
):
    """`extend_schema` of an events endpoint that `sse_response` serves: a JSON `page` or,
    with Accept: text/event-stream, events whose data is a `data_component` (`kinds`
    examples), resumed by `query`'s ?after= or Last-Event-ID. `subject` names the object
    ("run") in the 204 and 404; the stream ends after `ends_after`. Without `description`
    the view's docstring is the operation's description."""
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=description,
        parameters=[query, LAST_EVENT_ID_PARAMETER],
        responses={
            (200, "application/json"): page,
            # drf-spectacular keeps the first description of a status code (the page's,
            # empty): this one is for readers of the code, not in the document.
            (200, "text/event-stream"): OpenApiResponse(
                sse_event_schema(data_component, kinds),
                description="One schema per event: `id: <seq>`, `event: <kind>`, `data: <event "
                f"JSON>`; `: heartbeat` comments between them; ends after {ends_after} "
                "(or after TEKTON_SSE_MAX_SECONDS: reconnect with Last-Event-ID).",
            ),
            (204, "text/event-stream"): OpenApiResponse(
                description=f"The {subject} is finished and nothing is left after the resume point."
            ),
            400: OpenApiResponse(description="A bad after, limit or Last-Event-ID."),
            401: OpenApiResponse(description="No or wrong credentials."),
            404: OpenApiResponse(description=f"No such {subject}, or not yours."),
        },
    )


class RunEventsApi(APIView):
    """A run's events: SSE with `Accept: text/event-stream`, a JSON page otherwise."""

    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @sse_events_schema(
        operation_id="runs_events",
        summary="A run's events (JSON page, or Server-Sent Events with Accept: text/event-stream)",
        query=RunEventsQuerySerializer,
        page=RunEventsPageSerializer,
        data_component="RunEvent",
        kinds="run.started, stage.finished, ...",
        subject="run",
        ends_after="the run's final event",
    )
    def get(self, request, run_id: int):
        query = RunEventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        run = get_object_or_404(runs_visible_to(request.user), pk=run_id)
        if getattr(request.accepted_renderer, "format", "") == EventStreamRenderer.format:
            return self._stream(
                request, run, query.validated_data["after"], query.validated_data["deltas"]
            )
        return self._page(run, query.validated_data["after"], query.validated_data["limit"])

    def _page(self, run: Run, after: int, limit: int) -> Response:
        events = run_events_after(run.pk, after, limit + 1)
        more = len(events) > limit
        events = events[:limit]
        return Response(
            {
                "events": [event_dict(e) for e in events],
                "next_after": events[-1].seq if more else None,
                "run_status": run.status,
            }
        )

    def _stream(self, request, run: Run, after: int, deltas: bool = False):
        return sse_response(
            request,
            run.pk,
            after=after,
            is_finished=run.is_finished,
            last=run_last_event(run.pk),
            deltas=deltas,
        )


def sse_response(
    request,
    object_id: int,
    *,
    after: int,
    is_finished: bool,
    last: dict[str, Any] | None,
    deltas: bool = False,
    source: EventSource = RUN_EVENTS,
):
    """The SSE answer for one object of `source` (a run, a prompt invocation) whose access
    the view has checked: 204 when it is finished and nothing is left after the resume
    point (Last-Event-ID wins over `after`), else the stream. `last` is {"seq", "kind"}
    of its newest stored event, or None."""
    resume = last_event_id(request)
    after = after if resume is None else resume
    if is_finished and last is not None and last["kind"] in source.final_kinds:
        if after >= last["seq"]:
            return Response(status=204)
    # The stream outlives this view: give back this request thread's database
    # connection now instead of holding one per open stream until it ends.
    if not connection.in_atomic_block:
        connection.close()
    heartbeat = float(getattr(settings, "TEKTON_SSE_HEARTBEAT_SECONDS", 15))
    longest = float(getattr(settings, "TEKTON_SSE_MAX_SECONDS", 300))
    response = StreamingHttpResponse(
        sse_stream(object_id, after, heartbeat, longest, deltas=deltas, source=source),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
