"""The notification hooks API: the same authentication and ownership as runs (a person
sees and changes their own hooks, staff all; another person's hook is 404). A webhook's
signing secret is in the 201 answer of its creation and nowhere else, ever."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications.models import EVENT_KINDS, Delivery, DeliveryAttempt, Hook
from notifications.selectors import deliveries_recent, hook_visible, hooks_visible_to
from notifications.services import hook_create, hook_delete, hook_pause, hook_resume
from tekton_site.api_errors import error_responses as api_error_responses


def error_responses(*codes: int) -> dict[int, Any]:
    return api_error_responses(
        *codes,
        texts={
            400: "A wrong value (a refused URL, no TEKTON_WEBHOOK_KEY, e-mail not configured, "
            "an unknown event): `errors` names the field.",
            404: "No such hook, or not yours.",
            409: "The hook is not paused.",
        },
    )


class HookInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_KINDS), min_length=1, max_length=10
    )
    url = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, help_text="A webhook URL (https)."
    )
    email = serializers.CharField(
        max_length=254, required=False, allow_blank=True, help_text="Or an e-mail address."
    )
    profile = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text="Staff: every run of this profile; otherwise your own runs.",
    )


class HookSerializer(serializers.ModelSerializer):
    profile = serializers.CharField(source="profile_name")
    owner = serializers.CharField(source="owner.get_username")

    class Meta:
        model = Hook
        fields = (
            "id",
            "name",
            "channel",
            "url",
            "email",
            "profile",
            "owner",
            "events",
            "secret_hint",
            "is_active",
            "paused_reason",
            "paused_at",
            "consecutive_failures",
            "last_success_at",
            "created_at",
        )


class HookCreatedSerializer(serializers.Serializer):
    hook = HookSerializer()
    secret = serializers.CharField(
        help_text="The signing secret (webhooks; empty for e-mail). Shown only here."
    )


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ("number", "status_code", "error", "duration_ms", "created_at")


class DeliverySerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uid")
    run = serializers.IntegerField(source="run_id")
    attempts_log = AttemptSerializer(many=True)

    class Meta:
        model = Delivery
        fields = (
            "id",
            "kind",
            "run",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "finished_at",
            "payload",
            "attempts_log",
        )


def hook_for(request, hook_id: int) -> Hook:
    hook = hook_visible(request.user, hook_id)
    if hook is None:
        raise exceptions.NotFound(f"hook {hook_id} not found")
    return hook


class HookListCreateApi(APIView):
    @extend_schema(
        operation_id="hooks_list",
        summary="Your notification hooks (staff: all)",
        responses={200: HookSerializer(many=True), **error_responses(401)},
    )
    def get(self, request):
        return Response(HookSerializer(hooks_visible_to(request.user)[:200], many=True).data)

    @extend_schema(
        operation_id="hooks_create",
        summary="Create a webhook or an e-mail hook; the webhook's secret is in this answer only",
        request=HookInputSerializer,
        responses={201: HookCreatedSerializer, **error_responses(400, 401)},
    )
    def post(self, request):
        body = HookInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        hook, secret = hook_create(
            owner=request.user,
            name=data["name"],
            events=data["events"],
            url=data.get("url", ""),
            email=data.get("email", ""),
            profile_name=data.get("profile", ""),
        )
        return Response(
            HookCreatedSerializer({"hook": hook, "secret": secret}).data,
            status=status.HTTP_201_CREATED,
        )


class HookDetailApi(APIView):
    @extend_schema(
        operation_id="hooks_retrieve",
        summary="One hook",
        responses={200: HookSerializer, **error_responses(401, 404)},
    )
    def get(self, request, hook_id: int):
        return Response(HookSerializer(hook_for(request, hook_id)).data)

    @extend_schema(
        operation_id="hooks_destroy",
        summary="Delete a hook and its delivery history",
        responses={204: None, **error_responses(401, 404)},
    )
    def delete(self, request, hook_id: int):
        hook_delete(hook=hook_for(request, hook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class HookPauseApi(APIView):
    @extend_schema(
        operation_id="hooks_pause",
        summary="Stop deliveries to a hook",
        request=None,
        responses={200: HookSerializer, **error_responses(401, 404)},
    )
    def post(self, request, hook_id: int):
        hook = hook_pause(hook=hook_for(request, hook_id))
        return Response(HookSerializer(hook).data)


class HookResumeApi(APIView):
    @extend_schema(
        operation_id="hooks_resume",
        summary="Deliver to a paused hook again (its failure count starts over)",
        request=None,
        responses={200: HookSerializer, **error_responses(401, 404, 409)},
    )
    def post(self, request, hook_id: int):
        hook = hook_resume(hook=hook_for(request, hook_id))
        return Response(HookSerializer(hook).data)


class HookDeliveriesApi(APIView):
    @extend_schema(
        operation_id="hooks_deliveries",
        summary="The hook's newest deliveries, each with every attempt",
        responses={200: DeliverySerializer(many=True), **error_responses(401, 404)},
    )
    def get(self, request, hook_id: int):
        hook = hook_for(request, hook_id)
        deliveries = deliveries_recent(Hook.objects.filter(pk=hook.pk), limit=50)
        return Response(DeliverySerializer(deliveries, many=True).data)
