"""One attempt at sending a delivery: a signed POST to a webhook, or an e-mail.

Signature: `X-Tekton-Signature: sha256=<hex>` where hex is HMAC-SHA256, keyed with the
hook's secret, of `<X-Tekton-Timestamp>.<body>` (the timestamp in Unix seconds, a dot,
then the raw body bytes). A receiver recomputes it, compares in constant time, and
refuses a timestamp more than a few minutes old (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.core.mail import send_mail

from notifications.urlcheck import UrlRefused, url_check
from swarm.redact import redact

USER_AGENT = "Tekton-Webhooks/1"


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    retryable: bool
    status_code: int | None = None
    error: str = ""
    duration_ms: int = 0


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def webhook_post(
    *, url: str, secret: str, body: bytes, event: str, delivery_uid: str
) -> AttemptResult:
    """POST `body` to `url`, signed; never follows a redirect; connects only to the
    address the SSRF check approved. 2xx is success; 408, 429, 5xx and network errors may
    be retried; any other answer (a redirect, 4xx) will not get better by retrying."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = url_check(url)
    except UrlRefused as exc:
        # DNS may have failed for a moment, or now points somewhere refused: try again later.
        return AttemptResult(ok=False, retryable=True, error=str(exc), duration_ms=took())
    timestamp = int(time.time())
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Tekton-Event": event,
        "X-Tekton-Delivery": delivery_uid,
        "X-Tekton-Timestamp": str(timestamp),
        "X-Tekton-Signature": signature(secret, timestamp, body),
    }
    extensions = {"sni_hostname": target.hostname} if target.scheme == "https" else {}
    try:
        # trust_env=False: a proxy from the environment would undo the address pinning.
        with httpx.Client(
            follow_redirects=False, timeout=settings.TEKTON_WEBHOOK_TIMEOUT_S, trust_env=False
        ) as client:
            answer = client.post(target.url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        error = redact(f"{type(exc).__name__}: {exc}")[:500]
        return AttemptResult(ok=False, retryable=True, error=error, duration_ms=took())
    code = answer.status_code
    if 200 <= code < 300:
        return AttemptResult(ok=True, retryable=False, status_code=code, duration_ms=took())
    if 300 <= code < 400:
        where = redact(answer.headers.get("location", ""))[:200]
        return AttemptResult(
            ok=False,
            retryable=False,
            status_code=code,
            error=f"answered {code} (redirect to {where or 'nowhere'}); redirects are not followed",
            duration_ms=took(),
        )
    return AttemptResult(
        ok=False,
        retryable=code >= 500 or code in (408, 429),
        status_code=code,
        error=f"answered {code}",
        duration_ms=took(),
    )


def email_send(*, address: str, subject: str, text: str) -> AttemptResult:
    """Send one e-mail through Django's e-mail backend (EMAIL_* settings)."""
    started = time.monotonic()
    try:
        send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, [address], fail_silently=False)
    except Exception as exc:  # SMTP errors, refused connections, bad addresses
        error = redact(f"{type(exc).__name__}: {exc}")[:500]
        return AttemptResult(
            ok=False,
            retryable=True,
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    return AttemptResult(
        ok=True, retryable=False, duration_ms=int((time.monotonic() - started) * 1000)
    )
