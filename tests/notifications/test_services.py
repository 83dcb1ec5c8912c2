"""Hooks from run events to a real loopback receiver: signed, retried with backoff after a
500, never followed through a redirect, paused after failing, and never carrying a secret."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.core import mail

from notifications.models import Delivery, DeliveryAttempt, Hook
from notifications.services import (
    deliveries_resume_due,
    delivery_attempt,
    hook_create,
    hook_resume,
    retry_delay,
)
from notifications.tasks import delivery_send_task
from runs.dispatch import run_inline
from runs.events import event_record
from runs.lifecycle import run_fail
from runs.models import Run
from tekton_site.errors import FieldError
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db(transaction=True)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    timestamp = headers["X-Tekton-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(headers["X-Tekton-Signature"], "sha256=" + expected.hexdigest())


def hold_dispatch():
    """Deliveries are written but not sent (as when their message was lost)."""
    from unittest import mock

    return mock.patch("notifications.services.deliveries_dispatch")


def webhook(user, receiver, events=("stage.blocked", "run.finished", "run.failed"), **kw):
    return hook_create(owner=user, name="ops", url=receiver.url, events=list(events), **kw)


def test_a_failed_run_is_posted_signed_after_a_500_retried(user, receiver, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-" + "k" * 40)
    hook, secret = webhook(user, receiver)
    receiver.answers = [500]
    run = RunFactory(owner=user, goal="Fix login (token sk-ant-api03-" + "k" * 40 + ")")
    run_fail(run_id=run.pk, reason="stage code failed: ProviderAuthError: bad key")

    assert len(receiver.received) == 2  # the 500, then the retry that got 200
    first, second = receiver.received
    assert first.body == second.body  # every attempt sends the same body
    assert verify(secret, second.headers, second.body)
    assert not verify(secret + "x", second.headers, second.body)
    assert second.headers["X-Tekton-Event"] == "run.failed"
    payload = json.loads(second.body)
    assert payload["event"] == "run.failed"
    assert payload["run"]["url"] == f"https://tekton.example.com/runs/{run.pk}/"
    assert payload["run"]["name"] == run.name
    assert payload["detail"]["reason"].startswith("stage code failed")
    assert second.headers["X-Tekton-Delivery"] == payload["id"]

    delivery = Delivery.objects.get(hook=hook)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert [a.status_code for a in delivery.attempts_log.all()] == [500, 200]
    # No secret anywhere a receiver sees: not the hook's, not the key, not an API key.
    from django.conf import settings

    for sent in receiver.received:
        text = sent.body.decode() + json.dumps(sent.headers)
        assert secret not in text
        assert settings.TEKTON_WEBHOOK_KEYS[0] not in text
        assert "sk-ant-api03" not in text


def test_a_blocked_stage_and_a_finished_run_notify_with_stage_links(
    user, receiver, git_repo, fake_engine
):
    webhook(user, receiver)
    fake_engine.behaviour = {"review": "block"}
    run = RunFactory(owner=user, repo_path=str(git_repo), stage_from="plan", stage_to="review")
    from runs.dispatch import stages_dispatch
    from runs.lifecycle import stages_ready

    stages_dispatch(stages_ready(run_id=run.pk))
    run.refresh_from_db()
    assert run.status == Run.Status.BLOCKED
    events = [json.loads(r.body) for r in receiver.received]
    assert [e["event"] for e in events] == ["stage.blocked"]
    assert events[0]["stage"] == "review"
    assert events[0]["stage_url"].endswith(f"/runs/{run.pk}/?stage=review")
    assert "quorum" in events[0]["detail"]["reason"]

    from runs.services import stage_approve

    stage_approve(run=run, stage="review", by=user)
    run_inline(run.pk)
    assert [json.loads(r.body)["event"] for r in receiver.received][-1] == "run.finished"


def test_only_subscribed_kinds_and_own_runs_are_sent(user, receiver, django_user_model):
    webhook(user, receiver, events=["run.finished"])
    other = django_user_model.objects.create_user("bob", password="pw-for-tests-only")
    run_fail(run_id=RunFactory(owner=user).pk, reason="boom")  # not subscribed
    event_record(run_id=RunFactory(owner=other).pk, kind="run.finished")  # not theirs
    assert receiver.received == []
    assert Delivery.objects.count() == 0


def test_a_profile_hook_hears_every_run_of_the_profile(staff_user, user, receiver):
    from config_profiles.services import profile_create

    profile_create(data={"name": "team", "stage_models": {"default": "openai/gpt-4o"}})
    webhook(staff_user, receiver, events=["run.failed"], profile_name="team")
    run_fail(run_id=RunFactory(owner=user, profile_name="team").pk, reason="x")
    run_fail(run_id=RunFactory(owner=user, profile_name="other").pk, reason="y")
    assert len(receiver.received) == 1


def test_profile_hooks_are_for_staff(user, receiver):
    with pytest.raises(FieldError, match="only staff"):
        webhook(user, receiver, profile_name="team")


def test_redirects_are_not_followed_nor_retried(user, receiver):
    hook, _ = webhook(user, receiver)
    receiver.answers = [302]
    receiver.redirect_to = "http://169.254.169.254/latest/meta-data"
    run_fail(run_id=RunFactory(owner=user).pk, reason="x")
    assert [r.path for r in receiver.received] == ["/hook"]
    delivery = Delivery.objects.get(hook=hook)
    assert delivery.status == "failed"
    assert "redirects are not followed" in delivery.last_error


def test_retries_stop_at_the_limit_and_repeated_failures_pause_the_hook(user, receiver):
    hook, _ = webhook(user, receiver)
    receiver.answers = [503] * 12
    for _ in range(3):
        run_fail(run_id=RunFactory(owner=user).pk, reason="x")
    assert len(receiver.received) == 12  # 3 deliveries x TEKTON_WEBHOOK_MAX_ATTEMPTS
    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"}
    hook.refresh_from_db()
    assert not hook.is_active
    assert "paused after 3 failed deliveries in a row" in hook.paused_reason
    assert "answered 503" in hook.paused_reason

    run_fail(run_id=RunFactory(owner=user).pk, reason="while paused")
    assert len(receiver.received) == 12  # a paused hook gets nothing
    hook_resume(hook=hook)
    run_fail(run_id=RunFactory(owner=user).pk, reason="after resume")
    assert len(receiver.received) == 13
    hook.refresh_from_db()
    assert (hook.is_active, hook.consecutive_failures) == (True, 0)


def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(user, receiver):
    # receiver.test resolves (in the tests) to 127.0.0.1: nothing else could reach it.
    url = f"http://receiver.test:{receiver.port}/hook"
    hook_create(owner=user, name="pinned", url=url, events=["run.failed"])
    run_fail(run_id=RunFactory(owner=user).pk, reason="x")
    assert receiver.received[0].headers["Host"] == f"receiver.test:{receiver.port}"


def test_an_unreachable_receiver_is_retried_with_growing_backoff(user, settings):
    from tests.streams.live import free_port

    settings.TEKTON_WEBHOOK_RETRY_BASE_S = 10
    hook, _ = hook_create(
        owner=user, name="down", url=f"http://127.0.0.1:{free_port()}/", events=["run.failed"]
    )
    with hold_dispatch():  # attempts are driven by hand here
        run_fail(run_id=RunFactory(owner=user).pk, reason="x")
    delivery = Delivery.objects.get(hook=hook)
    delay = delivery_attempt(delivery_id=delivery.pk)
    assert 8 <= delay <= 12
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert "ConnectError" in delivery.last_error
    # Early again (a redelivered message): no attempt, just the time left.
    assert delivery_attempt(delivery_id=delivery.pk) > 5
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 1
    assert 16 <= retry_delay(2) <= 24 and retry_delay(30) <= 3600 * 1.2


def test_the_celery_task_retries_until_delivered(user, receiver, settings):
    hook, _ = webhook(user, receiver)
    with hold_dispatch():
        run_fail(run_id=RunFactory(owner=user).pk, reason="x")
    receiver.answers = [500, 502]
    delivery = Delivery.objects.get(hook=hook)
    delivery_send_task.apply(args=[delivery.pk])  # eager: retries run in place
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    delivery_send_task.apply(args=[delivery.pk])  # a second delivery of the message
    assert len(receiver.received) == 3


def test_overdue_deliveries_are_sent_again(user, receiver, settings):
    hook, _ = webhook(user, receiver)
    with hold_dispatch():
        run_fail(run_id=RunFactory(owner=user).pk, reason="lost message")
    assert deliveries_resume_due(older_than_s=3600) == 0
    assert deliveries_resume_due(older_than_s=0) == 1
    assert Delivery.objects.get(hook=hook).status == "delivered"


def test_webhooks_need_the_key_and_say_so(user, receiver, settings):
    settings.TEKTON_WEBHOOK_KEYS = []
    with pytest.raises(FieldError, match="TEKTON_WEBHOOK_KEY is not set") as err:
        webhook(user, receiver)
    assert err.value.field == "url"
    settings.TEKTON_WEBHOOK_KEYS = ["not-a-key"]
    with pytest.raises(FieldError, match="not a Fernet key"):
        webhook(user, receiver)
    assert Hook.objects.count() == 0


def test_the_secret_is_stored_only_encrypted(user, receiver):
    hook, secret = webhook(user, receiver)
    assert secret.startswith("whsec_") and len(secret) > 40
    row = Hook.objects.filter(pk=hook.pk).values().get()
    assert all(secret not in str(value) for value in row.values())
    assert hook.secret_hint == secret[:10]


def test_a_refused_url_is_a_field_error(user, settings):
    settings.TEKTON_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(FieldError, match="loopback address") as err:
        hook_create(owner=user, name="x", url="http://127.0.0.1/", events=["run.failed"])
    assert err.value.field == "url"


def test_email_hooks_send_through_the_email_backend(user, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.TEKTON_EMAIL_ENABLED = True
    hook, secret = hook_create(
        owner=user, name="me", email="ada@example.com", events=["run.failed"]
    )
    assert secret == ""
    run = RunFactory(owner=user)
    run_fail(run_id=run.pk, reason="tests failed")
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.com"]
    assert "run.failed" in message.subject
    assert f"https://tekton.example.com/runs/{run.pk}/" in message.body
    assert "tests failed" in message.body
    assert Delivery.objects.get(hook=hook).status == "delivered"


def test_email_needs_configuring(user, settings):
    settings.TEKTON_EMAIL_ENABLED = False
    with pytest.raises(FieldError, match="e-mail is not configured"):
        hook_create(owner=user, name="me", email="ada@example.com", events=["run.failed"])


def test_a_receiver_error_never_loses_the_event(user, receiver, mocker):
    webhook(user, receiver)
    mocker.patch("notifications.services.deliveries_create", side_effect=RuntimeError("boom"))
    run = RunFactory(owner=user)
    run_fail(run_id=run.pk, reason="x")
    assert run.events.filter(kind="run.failed").count() == 1


def test_a_run_that_reaches_its_budget_notifies_budget_reached(
    user, receiver, git_repo, fake_engine
):
    from tests.factories import frozen_config

    webhook(user, receiver, events=("budget.reached",))
    run = RunFactory(
        owner=user,
        repo_path=str(git_repo),
        stage_from="plan",
        stage_to="plan",
        config=frozen_config(["plan"], budget_tokens=100),  # the fake's call needs 120
    )
    run_inline(run.pk)
    events = [json.loads(r.body) for r in receiver.received]
    assert [e["event"] for e in events] == ["budget.reached"]
    assert events[0]["stage"] == "plan"
    assert events[0]["detail"]["reason"].startswith("budget reached: 0 of 100 tokens")


def test_recording_events_needs_neither_the_sender_nor_the_secret_box(tmp_path):
    """Every recorded event passes through notifications.services; a run with no hooks
    must not pay for importing httpx and cryptography."""
    from tests.support.imports import modules_loaded_by

    loaded = modules_loaded_by(
        "import notifications.services", ("httpx", "cryptography"), data_dir=tmp_path
    )
    assert loaded == []
