"""Notification hooks (a webhook URL or an e-mail address), their deliveries and every
attempt of each delivery."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

# The run events a hook may subscribe to. A new kind only needs adding here.
EVENT_KINDS = ("stage.blocked", "run.finished", "run.failed", "budget.reached")


class Hook(models.Model):
    class Channel(models.TextChoices):
        WEBHOOK = "webhook"
        EMAIL = "email"

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="hooks"
    )
    name = models.CharField(max_length=100)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    url = models.URLField(max_length=2000, blank=True, default="")
    email = models.EmailField(blank=True, default="")
    # "" = the owner's runs; a profile name = every run of that profile (staff only).
    profile_name = models.CharField(max_length=100, blank=True, default="")
    events = models.JSONField(default=list)
    # The signing secret, Fernet-encrypted with TEKTON_WEBHOOK_KEY (which is never in the
    # database): a copy of the database alone does not give the secret away.
    secret_encrypted = models.TextField(blank=True, default="")
    secret_hint = models.CharField(max_length=16, blank=True, default="")
    is_active = models.BooleanField(default=True)
    paused_reason = models.TextField(blank=True, default="")
    paused_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.target})"

    @property
    def target(self) -> str:
        return self.url if self.channel == self.Channel.WEBHOOK else self.email

    @property
    def is_paused(self) -> bool:
        return not self.is_active


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"
        SKIPPED = "skipped"  # the hook was paused or deleted before it went out

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="deliveries")
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="+")
    event = models.ForeignKey("runs.RunEvent", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=40)
    # The body every attempt sends, built once when the event was recorded.
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["hook", "event"], name="uniq_delivery_per_hook_event")
        ]

    def __str__(self) -> str:
        return f"{self.kind} of run {self.run_id} to hook {self.hook_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status != self.Status.PENDING


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts_log")
    number = models.PositiveSmallIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["delivery_id", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"

    @property
    def ok(self) -> bool:
        return not self.error and (self.status_code is None or 200 <= self.status_code < 300)
