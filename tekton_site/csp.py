"""A strict Content-Security-Policy on every HTML response.

LLM output is shown on the dashboard; autoescaping keeps it text, and this header is the
second wall: no inline script, no script or style from anywhere but this server, no
framing. The dashboard's own JavaScript lives in static/ (no inline handlers), so nothing
of ours needs a nonce. Written by hand rather than with django-csp: it is one header.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self' ws: wss:",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

# drf-spectacular's Swagger UI page bootstraps itself with an inline script; it is served
# from the installed sidecar package, so that page alone is left without the header.
EXEMPT_PREFIXES = ("/api/docs/",)


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Adds `Content-Security-Policy: POLICY` unless the view already set one.

    A MiddlewareMixin so it runs sync or async without an adapter hop (the SSE stream is
    an async view)."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if "Content-Security-Policy" in response:
            return response
        if request.path.startswith(EXEMPT_PREFIXES):
            return response
        response["Content-Security-Policy"] = POLICY
        return response
