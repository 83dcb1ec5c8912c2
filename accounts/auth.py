"""DRF authentication with `Authorization: Bearer tkn_...` tokens.

Failures are logged on "tekton.auth" with the reason, path and client address, never the
token. `authenticate_header` makes DRF answer 401 (not 403) when credentials are missing
or wrong.
"""

from __future__ import annotations

import logging

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from accounts.services import token_authenticate

logger = logging.getLogger("tekton.auth")

KEYWORD = "Bearer"


def _client(request) -> str:
    return request.META.get("REMOTE_ADDR") or "?"


def _fail(request, reason: str) -> exceptions.AuthenticationFailed:
    logger.warning(
        "API authentication failed: %s (%s %s from %s)",
        reason,
        request.method,
        request.path,
        _client(request),
    )
    return exceptions.AuthenticationFailed(reason)


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != KEYWORD.lower().encode():
            return None  # not ours: the session (or nothing) decides
        if len(header) != 2:
            raise _fail(request, "malformed Authorization header: expected 'Bearer <token>'")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise _fail(request, "invalid token") from None
        token = token_authenticate(raw=raw)
        if token is None:
            raise _fail(request, "invalid or revoked token")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return KEYWORD


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Tells drf-spectacular how the bearer token appears in the OpenAPI schema."""

    target_class = "accounts.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from `manage.py tekton token create USERNAME`.",
        }
