"""One JSON error shape for the whole API, and the mapping from service errors to HTTP.

Every 4xx body is either {"errors": {"<field>": ["message", ...]}} (the request was wrong,
field by field) or {"detail": "message", ...} (anything else). Service errors:
FieldError / FieldError -> 400 naming the API's field, StateError -> 409,
ServiceUnavailable -> 503 {"detail", "service"}. An unexpected exception is logged and
answered with a JSON 500, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from swarm.redact import redact
from tekton_site.errors import FieldError, ServiceUnavailable, StateError

logger = logging.getLogger("tekton.api")

# Service field names -> the names the API's request bodies use.
FIELD_NAMES = {
    "stage_from": "from",
    "stage_to": "to",
    "from_stage": "from",  # a fork's first stage to run
    "repo_path": "repo",
    "profile_name": "profile",
    # The server's TEKTON_LLM_BACKEND, not a request field: no field of the body is wrong.
    "llm_backend": "non_field_errors",
}


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "the request conflicts with the current state"
    default_code = "conflict"


class LimitExceeded(exceptions.Throttled):
    """A per-user limit (runs in flight, runs per minute); 429 with Retry-After."""

    def __init__(self, *, limit: str, detail: str, wait: int, maximum: int):
        super().__init__(wait=wait, detail=detail)
        self.limit = limit
        self.maximum = maximum


class ErrorSerializer(serializers.Serializer):
    """Every error body: `errors` (field -> messages) for a wrong request, `detail`
    otherwise; 429 adds `limit`, `max` and `retry_after`, 503 adds `service`."""

    detail = serializers.CharField(required=False)
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )
    service = serializers.CharField(required=False)
    limit = serializers.CharField(required=False)
    max = serializers.IntegerField(required=False)
    retry_after = serializers.IntegerField(required=False)


# What each error status means, as the OpenAPI document says it; an API overrides the
# wording of the ones whose meaning is its own (404: "no such profile").
ERROR_TEXTS = {
    400: "The request is wrong: `errors` names each field and its problem.",
    401: "No credentials, or a wrong or revoked token.",
    403: "Authenticated, but not allowed (staff only, or CSRF missing on a session write).",
    404: "Not found, or not yours.",
    409: "Not allowed in the current state.",
    429: "A per-user limit was reached: `limit` says which; see the Retry-After header.",
    503: "A service the request needs is down: `service` says which.",
}


def error_responses(*codes: int, texts: dict[int, str] | None = None) -> dict[int, Any]:
    """The documented error answers of an operation, each with the ErrorSerializer shape."""
    from drf_spectacular.utils import OpenApiResponse

    wording = ERROR_TEXTS | (texts or {})
    return {code: OpenApiResponse(ErrorSerializer, description=wording[code]) for code in codes}


def field_errors(field: str, message: str) -> dict[str, Any]:
    return {"errors": {FIELD_NAMES.get(field, field): [redact(message)]}}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested validation errors as {"dotted.field": [messages]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for k, v in _flatten(value, name).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        for index, value in enumerate(detail):
            for k, v in _flatten(value, f"{prefix}.{index}" if prefix else str(index)).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        out[prefix or "non_field_errors"] = [str(item) for item in detail]
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, FieldError | FieldError):
        return Response(field_errors(exc.field, exc.message), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, StateError):
        return Response({"detail": redact(str(exc))}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, ServiceUnavailable):
        return Response(
            {"detail": exc.message, "service": exc.service},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if isinstance(exc, Http404 | PermissionDenied | exceptions.APIException):
        response = exception_handler(exc, context)
        if response is None:
            return None
        if isinstance(exc, exceptions.ValidationError):
            response.data = {"errors": _flatten(exc.detail)}
        else:
            detail = getattr(exc, "detail", None)
            if isinstance(exc, Http404):
                detail = "not found"
            elif isinstance(exc, PermissionDenied) and not isinstance(exc, exceptions.APIException):
                detail = "you do not have permission to do this"
            response.data = {"detail": str(detail) if detail is not None else response.status_text}
            if isinstance(exc, LimitExceeded):
                response.data.update(limit=exc.limit, max=exc.maximum, retry_after=exc.wait)
        return response
    view = context.get("view")
    logger.error(
        "unexpected error in %s: %s",
        type(view).__name__ if view else "the API",
        redact(f"{type(exc).__name__}: {exc}"),
        exc_info=exc,
    )
    return Response(
        {"detail": "internal error; the server log has the details"},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def not_found(request, exception=None):
    """handler404: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "not found"}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)
