"""Notification hooks: create, pause, resume, delete; deliveries made from run events and
sent by one function, whichever process runs it.

Flow: runs.events records an event and sends `events_recorded` inside its transaction;
`on_events_recorded` writes one Delivery per matching hook in that same transaction (so a
committed event never loses its notification, and a rolled-back one sends nothing), and
on commit hands the delivery ids to `deliveries_dispatch`: a Celery task per delivery in
celery mode, a background thread of this process in embedded mode. Both call
`delivery_attempt`, which sends once and says when to try again.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from notifications.models import EVENT_KINDS, Delivery, DeliveryAttempt, Hook
from notifications.urlcheck import UrlRefused, url_check
from runs.models import Run, RunEvent
from swarm.redact import redact
from tekton_site.db import connection_release
from tekton_site.errors import FieldError, StateError

if TYPE_CHECKING:
    from notifications.sending import AttemptResult

# The sender (httpx) and the secret box (cryptography) are imported where a hook is made
# or a delivery sent: every recorded event passes through this module, and a run with no
# hooks (embedded `tekton run`, most runs) needs neither.

logger = logging.getLogger("tekton.notifications.services")

SECRET_PREFIX = "whsec_"
RETRY_CAP_S = 3600.0


# --- hooks ---------------------------------------------------------------------------------
def email_enabled() -> bool:
    return bool(settings.TEKTON_EMAIL_ENABLED)


def _events_clean(events: list[str] | None) -> list[str]:
    wanted = list(dict.fromkeys(e.strip() for e in (events or []) if e and e.strip()))
    if not wanted:
        raise FieldError("events", f"choose at least one event: {', '.join(EVENT_KINDS)}")
    unknown = [e for e in wanted if e not in EVENT_KINDS]
    if unknown:
        raise FieldError(
            "events", f"unknown event {unknown[0]!r}; events are: {', '.join(EVENT_KINDS)}"
        )
    return wanted


@transaction.atomic
def hook_create(
    *,
    owner,
    name: str,
    events: list[str],
    url: str = "",
    email: str = "",
    profile_name: str = "",
) -> tuple[Hook, str]:
    """Create a webhook (`url`) or an e-mail hook (`email`); returns (hook, secret). The
    secret ("whsec_...", "" for e-mail) signs every delivery; it is returned only here and
    stored only encrypted. `profile_name` makes it fire for every run of that profile
    (staff only), else for the owner's runs. Raises FieldError: a bad or refused URL (see
    urlcheck), TEKTON_WEBHOOK_KEY missing (field "url"), e-mail not configured, an unknown
    event or profile."""
    name = (name or "").strip()
    if not name:
        raise FieldError("name", "give the hook a name")
    if len(name) > 100:
        raise FieldError("name", f"the name is {len(name)} characters; the limit is 100")
    wanted = _events_clean(events)
    url, email = (url or "").strip(), (email or "").strip()
    if bool(url) == bool(email):
        raise FieldError("url", "give either a webhook URL or an e-mail address")
    profile_name = (profile_name or "").strip()
    if profile_name:
        if not owner.is_staff:
            raise FieldError("profile_name", "only staff may subscribe to every run of a profile")
        from config_profiles.selectors import profile_names

        if profile_name not in profile_names():
            raise FieldError("profile_name", f"no profile named {profile_name!r}")
    secret = ""
    fields: dict[str, Any] = {}
    if url:
        if len(url) > 2000:
            raise FieldError("url", "the URL is longer than 2000 characters")
        try:
            url_check(url)
        except UrlRefused as exc:
            raise FieldError("url", str(exc)) from None
        from notifications import crypto

        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        try:
            fields["secret_encrypted"] = crypto.secret_encrypt(secret)
        except crypto.SecretKeyError as exc:
            raise FieldError("url", f"webhooks cannot be created: {exc}") from None
        fields["secret_hint"] = secret[: len(SECRET_PREFIX) + 4]
        fields.update(channel=Hook.Channel.WEBHOOK, url=url)
    else:
        if not email_enabled():
            raise FieldError(
                "email", "e-mail is not configured: set TEKTON_EMAIL_HOST (or TEKTON_EMAIL_BACKEND)"
            )
        from django.core.exceptions import ValidationError
        from django.core.validators import validate_email

        try:
            validate_email(email)
        except ValidationError:
            raise FieldError("email", f"{email[:200]!r} is not an e-mail address") from None
        fields.update(channel=Hook.Channel.EMAIL, email=email)
    hook = Hook.objects.create(
        owner=owner, name=name, events=wanted, profile_name=profile_name, **fields
    )
    return hook, secret


@transaction.atomic
def hook_pause(*, hook: Hook, reason: str = "paused by its owner") -> Hook:
    """Stop deliveries to the hook (pending ones are skipped). Idempotent."""
    Hook.objects.filter(pk=hook.pk).update(
        is_active=False, paused_at=timezone.now(), paused_reason=redact(reason)[:1000]
    )
    hook.refresh_from_db()
    return hook


@transaction.atomic
def hook_resume(*, hook: Hook) -> Hook:
    """Deliver again, with the failure count reset. Raises StateError when it is active."""
    if hook.is_active:
        raise StateError(f"hook {hook.pk} is not paused")
    Hook.objects.filter(pk=hook.pk).update(
        is_active=True, paused_at=None, paused_reason="", consecutive_failures=0
    )
    hook.refresh_from_db()
    return hook


@transaction.atomic
def hook_delete(*, hook: Hook) -> None:
    hook.delete()


# --- deliveries from events ----------------------------------------------------------------
def _public(path: str) -> str:
    return f"{settings.TEKTON_PUBLIC_URL}{path}"


def delivery_payload(*, delivery_uid: str, run: Run, event: RunEvent) -> dict[str, Any]:
    """The JSON a hook receives: what happened, to which run, and links to it. Never a
    secret: the event payload is already redacted, and no key or hook secret is added."""
    stage = event.stage or None
    return {
        "id": delivery_uid,
        "event": event.kind,
        "created_at": event.created_at.isoformat() if event.created_at else None,
        "run": {
            "id": run.pk,
            "uid": str(run.uid),
            "name": run.name,
            "status": run.status,
            "goal": redact(run.goal)[:500],
            "profile": run.profile_name,
            "url": _public(f"/runs/{run.pk}/"),
            "api_url": _public(f"/api/runs/{run.pk}/"),
        },
        "stage": stage,
        "stage_url": _public(f"/runs/{run.pk}/?stage={stage}") if stage else None,
        "detail": event.payload,
    }


def _matching_hooks(run: Run, kind: str) -> list[Hook]:
    scope = Q(profile_name=run.profile_name) & ~Q(profile_name="")
    if run.owner_id is not None:
        scope |= Q(owner_id=run.owner_id, profile_name="")
    # events is a short list; matched here rather than with a JSON lookup SQLite lacks.
    return [h for h in Hook.objects.filter(scope, is_active=True) if kind in (h.events or [])]


def deliveries_create(*, events: list[RunEvent]) -> list[int]:
    """One pending Delivery per (event, matching active hook); returns the new ids. Call
    inside the transaction that recorded the events. A second call for the same events
    creates nothing (unique per hook and event)."""
    created: list[int] = []
    runs: dict[int, Run] = {}
    for event in events:
        if event.kind not in EVENT_KINDS:
            continue
        run = runs.get(event.run_id)
        if run is None:
            run = runs[event.run_id] = Run.objects.get(pk=event.run_id)
        for hook in _matching_hooks(run, event.kind):
            if Delivery.objects.filter(hook=hook, event=event).exists():
                continue
            delivery = Delivery(hook=hook, run=run, event=event, kind=event.kind)
            delivery.payload = delivery_payload(
                delivery_uid=str(delivery.uid), run=run, event=event
            )
            delivery.save()
            created.append(delivery.pk)
    return created


def on_events_recorded(sender, events: list[RunEvent], **kwargs) -> None:
    """runs.events.events_recorded receiver: deliveries for the notified kinds, written in
    a savepoint (a failure here must not undo the events), sent on commit."""
    if not any(e.kind in EVENT_KINDS for e in events):
        return
    try:
        with transaction.atomic():
            ids = deliveries_create(events=events)
    except Exception:
        logger.exception("run %s: could not queue notifications", events[0].run_id)
        return
    if ids:
        transaction.on_commit(lambda: deliveries_dispatch(ids))


# --- sending -------------------------------------------------------------------------------
def retry_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): exponential from
    TEKTON_WEBHOOK_RETRY_BASE_S, capped at an hour, with +-20 % jitter so many failing
    deliveries do not retry in lockstep."""
    base = float(settings.TEKTON_WEBHOOK_RETRY_BASE_S) * (2 ** max(0, attempt - 1))
    return min(RETRY_CAP_S, base) * random.uniform(0.8, 1.2)


def _body(delivery: Delivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def _email_text(delivery: Delivery) -> tuple[str, str]:
    p = delivery.payload
    run = p.get("run") or {}
    subject = f"[Tekton] {run.get('name')}: {delivery.kind}"
    detail = p.get("detail") or {}
    lines = [
        f"Run {run.get('id')} ({run.get('name')}) — {delivery.kind}",
        f"Status: {run.get('status')}",
    ]
    if p.get("stage"):
        lines.append(f"Stage: {p['stage']}")
    if detail.get("reason"):
        lines.append(f"Reason: {detail['reason']}")
    lines += [
        "",
        f"Goal: {run.get('goal')}",
        "",
        f"Open the run: {p.get('stage_url') or run.get('url')}",
    ]
    return subject, "\n".join(lines) + "\n"


def _send(delivery: Delivery) -> AttemptResult:
    from notifications import crypto, sending

    hook = delivery.hook
    if hook.channel == Hook.Channel.EMAIL:
        subject, text = _email_text(delivery)
        return sending.email_send(address=hook.email, subject=subject, text=text)
    try:
        secret = crypto.secret_decrypt(hook.secret_encrypted)
    except crypto.SecretKeyError as exc:
        return sending.AttemptResult(ok=False, retryable=False, error=str(exc))
    return sending.webhook_post(
        url=hook.url,
        secret=secret,
        body=_body(delivery),
        event=delivery.kind,
        delivery_uid=str(delivery.uid),
    )


def delivery_attempt(*, delivery_id: int) -> float | None:
    """Make the next attempt of a pending delivery; returns the seconds to wait before the
    next one, or None when there is nothing more to do (delivered, failed for good,
    skipped, gone, or another executor has the attempt).

    Safe to run twice: an attempt is claimed by bumping `attempts` from the value read, so
    two executors never send the same attempt. Every attempt is logged
    (DeliveryAttempt). After TEKTON_WEBHOOK_MAX_ATTEMPTS, or an answer that retrying cannot
    fix, the delivery fails; TEKTON_WEBHOOK_PAUSE_AFTER failed deliveries in a row pause
    the hook, with the reason on the Webhooks page."""
    delivery = Delivery.objects.select_related("hook").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != Delivery.Status.PENDING:
        return None
    hook = delivery.hook
    if not hook.is_active:
        Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING).update(
            status=Delivery.Status.SKIPPED,
            last_error="the hook is paused",
            finished_at=timezone.now(),
        )
        return None
    early = (
        (delivery.next_attempt_at - timezone.now()).total_seconds()
        if delivery.next_attempt_at
        else 0
    )
    if early > 0.5:
        # Delivered early (a redelivered message, the sweeper): wait for the planned time.
        return early
    number = delivery.attempts + 1
    claimed = Delivery.objects.filter(
        pk=delivery.pk, status=Delivery.Status.PENDING, attempts=delivery.attempts
    ).update(attempts=number, updated_at=timezone.now())
    if not claimed:
        return None
    result = _send(delivery)
    now = timezone.now()
    max_attempts = int(settings.TEKTON_WEBHOOK_MAX_ATTEMPTS)
    delay = None
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
        )
        fields: dict[str, Any] = {
            "last_status_code": result.status_code,
            "last_error": result.error,
        }
        if result.ok:
            fields.update(status=Delivery.Status.DELIVERED, finished_at=now, next_attempt_at=None)
            Hook.objects.filter(pk=hook.pk).update(consecutive_failures=0, last_success_at=now)
        elif result.retryable and number < max_attempts:
            delay = retry_delay(number)
            fields["next_attempt_at"] = now + timedelta(seconds=delay)
        else:
            fields.update(status=Delivery.Status.FAILED, finished_at=now, next_attempt_at=None)
            _failure_count(hook, result.error)
        Delivery.objects.filter(pk=delivery.pk).update(**fields)
    return delay


def _failure_count(hook: Hook, error: str) -> None:
    Hook.objects.filter(pk=hook.pk).update(consecutive_failures=F("consecutive_failures") + 1)
    failures = Hook.objects.values_list("consecutive_failures", flat=True).get(pk=hook.pk)
    limit = int(settings.TEKTON_WEBHOOK_PAUSE_AFTER)
    if limit > 0 and failures >= limit:
        Hook.objects.filter(pk=hook.pk, is_active=True).update(
            is_active=False,
            paused_at=timezone.now(),
            paused_reason=redact(
                f"paused after {failures} failed deliveries in a row; the last: {error}"
            )[:1000],
        )
        logger.warning("hook %s paused after %s failed deliveries", hook.pk, failures)


def deliveries_dispatch(delivery_ids: list[int]) -> None:
    """Send deliveries: a `delivery_send_task` each in celery mode; in embedded mode a
    background thread (synchronously when TEKTON_INLINE_THREADS is false) that makes the
    attempts and sleeps the backoff in between."""
    ids = [int(i) for i in delivery_ids]
    if not ids:
        return
    if settings.TEKTON_EXECUTION == "celery":
        from notifications.tasks import delivery_send_task

        for delivery_id in ids:
            delivery_send_task.apply_async(args=[delivery_id], queue=settings.TEKTON_QUEUE)
        return
    if settings.TEKTON_INLINE_THREADS:
        # A thread each: one receiver's backoff must not hold up the others.
        for delivery_id in ids:
            threading.Thread(
                target=_deliver_loop,
                args=([delivery_id], True),
                name=f"tekton-notify-{delivery_id}",
                daemon=True,
            ).start()
    else:
        _deliver_loop(ids, False)


def _deliver_loop(ids: list[int], close: bool) -> None:
    try:
        for delivery_id in ids:
            while (delay := delivery_attempt(delivery_id=delivery_id)) is not None:
                connection_release()  # through the backoff, the pool has it
                time.sleep(delay)
    except Exception:
        logger.exception("sending deliveries %s stopped", ids)
    finally:
        if close:
            connection.close()  # this thread opened it; nobody else will


def deliveries_resume_due(*, older_than_s: float = 60.0) -> int:
    """Queue pending deliveries whose next attempt is overdue by `older_than_s` (their
    message was lost: a worker died, a dispatch never ran). Returns how many. Harmless to
    run anywhere, any number of times: attempts are claimed."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    due = list(
        Delivery.objects.filter(status=Delivery.Status.PENDING)
        .filter(
            Q(next_attempt_at__lt=cutoff) | Q(next_attempt_at__isnull=True, updated_at__lt=cutoff)
        )
        .values_list("pk", flat=True)[:500]
    )
    if due:
        Delivery.objects.filter(pk__in=due).update(updated_at=timezone.now())
        deliveries_dispatch(due)
    return len(due)
