"""`/api/system/checks/`: every system check with status, detail and hint.

GET answers the results of the last run of the checks for this user when they are under
CACHE_SECONDS old (the checks talk to several services and can take seconds), else runs
them; POST always runs them again. The repositories checked are the distinct
repositories of the user's most recent runs. Key values are never shown: a provider
check says "set" or "missing".
"""

from __future__ import annotations

from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from runs.selectors import run_repositories_recent
from syschecks.registry import STATUSES
from syschecks.services import checks_run, checks_summary
from tekton_site.api_errors import ErrorSerializer

CACHE_SECONDS = 30
RECENT_RUNS = 50  # how far back to look for repositories
MAX_REPOS = 10


class CheckSerializer(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField()
    category = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=list(STATUSES))
    detail = serializers.CharField(allow_blank=True)
    hint = serializers.CharField(allow_blank=True)
    duration_ms = serializers.FloatField()


class SummarySerializer(serializers.Serializer):
    ok = serializers.IntegerField()
    warn = serializers.IntegerField()
    error = serializers.IntegerField()


class ChecksSerializer(serializers.Serializer):
    checked_at = serializers.DateTimeField()
    summary = SummarySerializer()
    checks = CheckSerializer(many=True)


class ChecksRunInputSerializer(serializers.Serializer):
    only = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        allow_empty=False,
        max_length=50,
        help_text="check ids or categories to run (default: all)",
    )


def _checks(user, only=None) -> dict:
    results = checks_run(
        repo_paths=run_repositories_recent(user, runs=RECENT_RUNS, limit=MAX_REPOS), only=only
    )
    return {
        "checked_at": timezone.now(),
        "summary": checks_summary(results),
        "checks": [r.as_dict() for r in results],
    }


def _cache_key(user) -> str:
    return f"tekton:syschecks:api:{user.pk}"


_errors = {
    401: OpenApiResponse(
        ErrorSerializer, description="No credentials, or a wrong or revoked token."
    ),
}


class SystemChecksApi(APIView):
    @extend_schema(
        operation_id="system_checks_list",
        summary="The system checks (results up to 30 s old)",
        responses={200: ChecksSerializer, **_errors},
    )
    def get(self, request):
        data = cache.get(_cache_key(request.user))
        if data is None:
            data = _checks(request.user)
            cache.set(_cache_key(request.user), data, CACHE_SECONDS)
        return Response(ChecksSerializer(data).data)

    @extend_schema(
        operation_id="system_checks_run",
        summary="Run the system checks again (all, or those in `only`)",
        request=ChecksRunInputSerializer,
        responses={
            200: ChecksSerializer,
            400: OpenApiResponse(ErrorSerializer, description="An unknown check id or category."),
            403: OpenApiResponse(ErrorSerializer, description="CSRF missing on a session write."),
            **_errors,
        },
    )
    def post(self, request):
        body = ChecksRunInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        only = body.validated_data.get("only")
        try:
            data = _checks(request.user, only=only)
        except ValueError as exc:
            raise serializers.ValidationError({"only": [str(exc)]}) from None
        if only is None:
            cache.set(_cache_key(request.user), data, CACHE_SECONDS)
        return Response(ChecksSerializer(data).data)
