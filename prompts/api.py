"""/api/prompts/: single-prompt invocations over HTTP, with the runs API's auth,
ownership (another user's invocation is 404) and per-user limits. A POST queues the
invocation (201) and a worker (or, embedded, this process) runs it; follow it on
/api/prompts/<id>/events (Server-Sent Events, as a run's, with Last-Event-ID resume) or
poll its detail."""

from __future__ import annotations

import math
from datetime import timedelta

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from prompts.events import PROMPT_EVENT_KINDS, prompt_event_dict
from prompts.models import PromptInvocation
from prompts.selectors import (
    prompt_invocations_created_since,
    prompt_invocations_filter,
    prompt_invocations_in_flight_count,
    prompt_invocations_visible_to,
)
from runs.api import IN_FLIGHT_RETRY_AFTER_S, RunCursorPagination
from runs.streams import EventsQuerySerializer, EventStreamRenderer, sse_events_schema, sse_response
from swarm.frontdoor.intent import INTENTS
from tekton_site.api_errors import LimitExceeded
from tekton_site.api_errors import error_responses as api_error_responses
from tekton_site.api_fields import StrictFloatField

AGENTS = ("claude", "codex", "agno", "prompt")
_ERROR_TEXTS = {
    403: "Not allowed: codex is staff-only and off unless TEKTON_PROMPT_CODEX_ENABLED.",
    404: "No such invocation, or not yours.",
}


def error_responses(*codes: int):
    return api_error_responses(*codes, texts=_ERROR_TEXTS)


class PromptAttemptSerializer(serializers.Serializer):
    model = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["ok", "failed", "no-route", "stopped"])
    detail = serializers.CharField(allow_blank=True)
    calls = serializers.IntegerField()
    duration_s = serializers.FloatField()


class PromptInvocationSerializer(serializers.ModelSerializer):
    owner = serializers.SerializerMethodField()
    cost_usd = serializers.FloatField()
    chain = serializers.ListField(child=serializers.CharField())
    attempts = PromptAttemptSerializer(many=True)

    class Meta:
        model = PromptInvocation
        fields = [
            "id",
            "owner",
            "source",
            "agent",
            "command",
            "intent",
            "status",
            "prompt",
            "context",
            "response",
            "error",
            "requested_model",
            "temperature",
            "chain",
            "attempts",
            "provider",
            "model",
            "tokens_in",
            "tokens_out",
            "cost_usd",
            "duration_s",
            "repo_path",
            "git_sha",
            "git_branch",
            "git_dirty",
            "journal_id",
            "created_at",
            "finished_at",
        ]

    def get_owner(self, obj) -> str | None:
        return obj.owner.get_username() if obj.owner else None


class PromptPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = PromptInvocationSerializer(many=True)


class PromptFilterSerializer(serializers.Serializer):
    agent = serializers.ChoiceField(choices=AGENTS + ("diamond",), required=False)
    status = serializers.ChoiceField(choices=PromptInvocation.Status.values, required=False)
    q = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="text in the prompt",
    )


class PromptCreateInputSerializer(serializers.Serializer):
    agent = serializers.ChoiceField(
        choices=AGENTS,
        default="prompt",
        help_text="prompt: along the intent's chain; claude; agno (planner -> coder -> "
        "reviewer); codex (staff only, when the server enables it)",
    )
    prompt = serializers.CharField(
        max_length=settings.TEKTON_PROMPT_MAX_CHARS, trim_whitespace=False
    )
    context = serializers.CharField(
        max_length=200_000, required=False, default="", allow_blank=True, trim_whitespace=False
    )
    model = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._:/+-]*)?$",
        max_length=200,
        required=False,
        allow_null=True,
        default=None,
        error_messages={"invalid": "a model id is vendor/model"},
    )
    temperature = StrictFloatField(
        min_value=0.0, max_value=2.0, required=False, allow_null=True, default=None
    )
    intent = serializers.ChoiceField(choices=INTENTS, required=False, allow_null=True, default=None)
    dry_run = serializers.BooleanField(default=False, help_text="agno: show the chain only")
    memory = serializers.BooleanField(
        default=True, help_text="offer your recent journal as context"
    )
    repo = serializers.CharField(
        max_length=1024,
        required=False,
        allow_null=True,
        default=None,
        help_text="a git repository under TEKTON_REPO_ROOTS, for the git facts",
    )


def prompt_limits_check(user) -> None:
    """The runs API's per-user limits, counted over invocations: in flight
    (TEKTON_API_MAX_RUNS_IN_FLIGHT) and created in the last minute
    (TEKTON_API_RUNS_PER_MINUTE). 429 with Retry-After."""
    max_in_flight = int(settings.TEKTON_API_MAX_RUNS_IN_FLIGHT)
    if max_in_flight > 0:
        in_flight = prompt_invocations_in_flight_count(user)
        if in_flight >= max_in_flight:
            raise LimitExceeded(
                limit="prompts_in_flight",
                maximum=max_in_flight,
                wait=IN_FLIGHT_RETRY_AFTER_S,
                detail=f"you have {in_flight} prompts queued or running; the limit is {max_in_flight}",
            )
    per_minute = int(settings.TEKTON_API_RUNS_PER_MINUTE)
    if per_minute > 0:
        now = timezone.now()
        recent = prompt_invocations_created_since(user, now - timedelta(minutes=1), per_minute)
        if len(recent) >= per_minute:
            wait = math.ceil((recent[-1] + timedelta(minutes=1) - now).total_seconds())
            raise LimitExceeded(
                limit="prompts_per_minute",
                maximum=per_minute,
                wait=max(1, wait),
                detail=f"you asked {per_minute} prompts in the last minute; the limit is {per_minute}",
            )


class PromptListCreateApi(APIView):
    @extend_schema(
        operation_id="prompts_list",
        summary="List your prompt invocations, newest first",
        description="Filters: `agent`, `status`, `q` (text in the prompt). Keyset pagination.",
        parameters=[PromptFilterSerializer],
        responses={200: PromptPageSerializer, **error_responses(400, 401)},
    )
    def get(self, request):
        filters = PromptFilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        qs = prompt_invocations_filter(
            prompt_invocations_visible_to(request.user),
            agent=data.get("agent"),
            status=data.get("status"),
            text=data.get("q"),
        )
        paginator = RunCursorPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return Response(
            {
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "results": PromptInvocationSerializer(page, many=True).data,
            }
        )

    @extend_schema(
        operation_id="prompts_create",
        summary="Ask: queue one invocation (201); follow its events (or poll its detail)",
        request=PromptCreateInputSerializer,
        responses={201: PromptInvocationSerializer, **error_responses(400, 401, 403, 429, 503)},
    )
    def post(self, request):
        from django.core.exceptions import PermissionDenied

        from prompts.services import prompt_invocation_request
        from runs.health import services_check

        body = PromptCreateInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        prompt_limits_check(request.user)
        services_check()
        try:
            invocation = prompt_invocation_request(by=request.user, **data)
        except PermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        invocation = prompt_invocations_visible_to(request.user).get(pk=invocation.pk)
        return Response(
            PromptInvocationSerializer(invocation).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("prompt-detail", kwargs={"invocation_id": invocation.pk})},
        )


class PromptDetailApi(APIView):
    @extend_schema(
        operation_id="prompts_retrieve",
        summary="One invocation: prompt, response, chain tried, tokens, cost, git facts",
        responses={200: PromptInvocationSerializer, **error_responses(401, 404)},
    )
    def get(self, request, invocation_id: int):
        invocation = prompt_invocations_visible_to(request.user).filter(pk=invocation_id).first()
        if invocation is None:
            raise exceptions.NotFound(f"prompt invocation {invocation_id} not found")
        return Response(PromptInvocationSerializer(invocation).data)


class PromptEventSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=PROMPT_EVENT_KINDS)
    payload = serializers.JSONField()
    created_at = serializers.DateTimeField(allow_null=True)


class PromptEventsPageSerializer(serializers.Serializer):
    events = PromptEventSerializer(many=True)
    next_after = serializers.IntegerField(
        allow_null=True,
        help_text="Pass as ?after= for the next page; null when no more events exist now.",
    )
    invocation_status = serializers.ChoiceField(choices=PromptInvocation.Status.choices)


class PromptEventsApi(APIView):
    """An invocation's progress: SSE with `Accept: text/event-stream`, a JSON page
    otherwise. The stream is the runs' (runs.streams, runs.event_hub) over PromptEvent."""

    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @sse_events_schema(
        operation_id="prompts_events",
        summary="An invocation's progress (JSON page, or Server-Sent Events with "
        "Accept: text/event-stream)",
        description="Kinds, in order: `prompt.queued` / `prompt.started` (chain, intent), "
        "`prompt.step` (a model, or an agno role, begins), `prompt.attempt` (a model "
        "answered or failed), `prompt.fallback` (the chain moves on: from, to, reason), "
        "`prompt.answer` (the answer grew: write `text` at `offset`), and last "
        "`prompt.finished` (status, outcome, the whole response, error, tokens, cost).",
        query=EventsQuerySerializer,
        page=PromptEventsPageSerializer,
        data_component="PromptEvent",
        kinds="prompt.started, prompt.attempt, ...",
        subject="invocation",
        ends_after="`prompt.finished`",
    )
    def get(self, request, invocation_id: int):
        from prompts.selectors import prompt_events_after, prompt_last_event
        from prompts.streams import PROMPT_EVENTS

        query = EventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = query.validated_data["after"]
        invocation = prompt_invocations_visible_to(request.user).filter(pk=invocation_id).first()
        if invocation is None:
            raise exceptions.NotFound(f"prompt invocation {invocation_id} not found")
        if getattr(request.accepted_renderer, "format", "") == EventStreamRenderer.format:
            return sse_response(
                request,
                invocation.pk,
                after=after,
                is_finished=invocation.is_finished,
                last=prompt_last_event(invocation.pk),
                source=PROMPT_EVENTS,
            )
        limit = query.validated_data["limit"]
        events = prompt_events_after(invocation.pk, after, limit + 1)
        more = len(events) > limit
        events = events[:limit]
        return Response(
            {
                "events": [prompt_event_dict(e) for e in events],
                "next_after": events[-1].seq if more else None,
                "invocation_status": invocation.status,
            }
        )
