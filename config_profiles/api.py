"""The profiles REST API: `/api/config/profiles/` and `/api/config/profiles/<name>/`.

Everyone signed in reads profiles; only staff write them, because a profile's routes and
artifact root decide where every later run's prompts and files go. Values are checked by
config_profiles.services (known stages and roles, models with a route, rounds 0..5,
quorum and threshold in (0, 1], budgets >= 0). The default profile cannot be deleted:
409 with a message saying so (it exists, the request is fine, its state forbids it).
"""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from config_profiles.models import Profile
from config_profiles.selectors import profiles_all
from config_profiles.services import (
    MAX_ROUNDS,
    profile_create,
    profile_delete,
    profile_get,
    profile_update,
)
from swarm.stages import STAGE_NAMES
from tekton_site.api_errors import Conflict
from tekton_site.api_errors import error_responses as api_error_responses
from tekton_site.api_fields import StrictFloatField
from tekton_site.errors import FieldError

BIGINT_MAX = 2**63 - 1
# The same shapes profile_validate enforces, stated in the schema too.
NAME_RULE = RegexValidator(r"^[-a-zA-Z0-9_]+$", "letters, digits, '-' or '_' only")
MODEL_RULE = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._:/+-]*$", "a model id is vendor/model"
)


class StaffWritesPermission(permissions.BasePermission):
    message = "only staff may change profiles"

    def has_permission(self, request, view) -> bool:
        return request.method in permissions.SAFE_METHODS or bool(request.user.is_staff)


def error_responses(*codes: int) -> dict[int, Any]:
    return api_error_responses(
        *codes,
        texts={
            400: "A wrong value: `errors` names the field (dotted for nested ones) and the problem.",
            403: "Only staff may change profiles (or CSRF missing on a session write).",
            404: "No profile with that name.",
            409: "The default profile cannot be deleted.",
        },
    )


class StageModelsSerializer(serializers.Serializer):
    default = serializers.CharField(
        max_length=200, validators=[MODEL_RULE], help_text="vendor/model for every role"
    )
    stages = serializers.DictField(
        child=serializers.DictField(
            child=serializers.CharField(max_length=200, validators=[MODEL_RULE])
        ),
        required=False,
        help_text="stage -> {role: vendor/model}; overrides the default",
    )


class ProfileInputSerializer(serializers.Serializer):
    """Defaults are the model's: a PUT replaces every field, a PATCH only those given."""

    name = serializers.CharField(max_length=100, validators=[NAME_RULE])
    description = serializers.CharField(allow_blank=True, required=False, default="")
    stage_models = StageModelsSerializer()
    rounds = serializers.IntegerField(min_value=0, max_value=MAX_ROUNDS, required=False, default=2)
    quorum = StrictFloatField(min_value=0, max_value=1, required=False, default=2 / 3)
    threshold = StrictFloatField(min_value=0, max_value=1, required=False, default=0.70)
    consensus_free = serializers.ListField(
        child=serializers.ChoiceField(choices=list(STAGE_NAMES)), required=False, default=list
    )
    budget_tokens = serializers.IntegerField(
        min_value=0, max_value=BIGINT_MAX, required=False, default=0, help_text="0 = no limit"
    )
    budget_cost_usd = serializers.DecimalField(
        max_digits=10,
        decimal_places=2,
        min_value=0,
        required=False,
        default=0,
        coerce_to_string=False,
        help_text="0 = no limit",
    )
    artifact_root = serializers.CharField(
        max_length=1024, allow_blank=True, required=False, default=""
    )
    routes = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        default=list,
        help_text='[{"match": "x-ai/*", "backend": "openai", "base_url": ..., "key_env": ...}]',
    )
    prices = serializers.DictField(
        child=serializers.DictField(),
        required=False,
        default=dict,
        help_text='{"x-ai/grok-4": {"input": 3.0, "output": 15.0}} in $ per million tokens; '
        "a cost budget needs a price for every model not answered offline",
    )
    cache_stagger = serializers.BooleanField(
        required=False,
        default=True,
        help_text="on one priced model the opening proponent goes first so the other two "
        "read its cached prompt: cheaper input, +1 call of latency per debate stage",
    )


class ProfileSerializer(serializers.ModelSerializer):
    stage_models = serializers.JSONField()
    consensus_free = serializers.ListField(child=serializers.CharField())
    routes = serializers.ListField(child=serializers.DictField())
    prices = serializers.DictField(child=serializers.DictField())
    budget_cost_usd = serializers.DecimalField(
        max_digits=10, decimal_places=2, coerce_to_string=False
    )
    is_default = serializers.BooleanField()

    class Meta:
        model = Profile
        fields = [
            "id",
            "name",
            "description",
            "is_default",
            "stage_models",
            "rounds",
            "quorum",
            "threshold",
            "consensus_free",
            "budget_tokens",
            "budget_cost_usd",
            "artifact_root",
            "routes",
            "prices",
            "cache_stagger",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


def profile_for(name: str) -> Profile:
    try:
        return profile_get(name=name)
    except FieldError:
        raise exceptions.NotFound(f"no profile named {name[:100]!r}") from None


class ProfileListCreateApi(APIView):
    permission_classes = [permissions.IsAuthenticated, StaffWritesPermission]

    @extend_schema(
        operation_id="profiles_list",
        summary="All profiles, by name",
        responses={200: ProfileSerializer(many=True), **error_responses(401)},
    )
    def get(self, request):
        return Response(ProfileSerializer(profiles_all(), many=True).data)

    @extend_schema(
        operation_id="profiles_create",
        summary="Create a profile (staff)",
        request=ProfileInputSerializer,
        responses={201: ProfileSerializer, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        body = ProfileInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        profile = profile_create(data=body.validated_data)
        return Response(ProfileSerializer(profile).data, status=status.HTTP_201_CREATED)


class ProfileDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated, StaffWritesPermission]

    @extend_schema(
        operation_id="profiles_retrieve",
        summary="One profile",
        responses={200: ProfileSerializer, **error_responses(401, 404)},
    )
    def get(self, request, name: str):
        return Response(ProfileSerializer(profile_for(name)).data)

    def _update(self, request, name: str, *, partial: bool) -> Response:
        profile = profile_for(name)
        body = ProfileInputSerializer(data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        profile = profile_update(profile=profile, data=body.validated_data)
        return Response(ProfileSerializer(profile).data)

    @extend_schema(
        operation_id="profiles_update",
        summary="Replace a profile (staff); fields left out take their defaults",
        request=ProfileInputSerializer,
        responses={200: ProfileSerializer, **error_responses(400, 401, 403, 404)},
    )
    def put(self, request, name: str):
        return self._update(request, name, partial=False)

    @extend_schema(
        operation_id="profiles_partial_update",
        summary="Change some fields of a profile (staff)",
        request=ProfileInputSerializer(partial=True),
        responses={200: ProfileSerializer, **error_responses(400, 401, 403, 404)},
    )
    def patch(self, request, name: str):
        return self._update(request, name, partial=True)

    @extend_schema(
        operation_id="profiles_destroy",
        summary="Delete a profile (staff); the default profile cannot be deleted (409)",
        request=None,
        responses={204: None, **error_responses(401, 403, 404, 409)},
    )
    def delete(self, request, name: str):
        profile = profile_for(name)
        if profile.is_default:
            raise Conflict(f"the default profile {profile.name!r} cannot be deleted")
        profile_delete(profile=profile)
        return Response(status=status.HTTP_204_NO_CONTENT)
