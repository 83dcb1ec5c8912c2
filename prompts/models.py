"""Single-prompt invocations (`tekton ask`, `tekton prompt`, the API and the Prompts page):
who asked what of which models, what answered, at what cost. Texts are stored redacted."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class PromptInvocation(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        OK = "ok", "OK"
        FAILED = "failed", "Failed"
        DRY_RUN = "dry-run", "Dry run"

    class Source(models.TextChoices):
        CLI = "cli"
        API = "api"
        WEB = "web"

    FINISHED = (Status.OK, Status.FAILED, Status.DRY_RUN)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="prompt_invocations",
    )
    who = models.CharField(max_length=150, blank=True, default="")  # a login or username
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.CLI)
    agent = models.CharField(max_length=16, db_index=True)  # claude|codex|agno|diamond|prompt
    command = models.CharField(max_length=32)  # "ask claude", "prompt", ...
    intent = models.CharField(max_length=16, blank=True, default="")
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.RUNNING, db_index=True
    )
    prompt = models.TextField()
    context = models.TextField(blank=True, default="")
    response = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    requested_model = models.CharField(max_length=200, blank=True, default="")
    temperature = models.FloatField(null=True, blank=True)
    chain = models.JSONField(default=list)  # the models it would try, in order
    attempts = models.JSONField(default=list)  # [{model, outcome, detail, calls, duration_s}]
    provider = models.CharField(max_length=40, blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    duration_s = models.FloatField(default=0)
    # How it was asked beyond the texts: {"dry_run": bool, "memory": bool} (API and page).
    options = models.JSONField(default=dict, blank=True)
    repo_path = models.CharField(max_length=1024, blank=True, default="")
    git_sha = models.CharField(max_length=64, blank=True, default="")
    git_branch = models.CharField(max_length=200, blank=True, default="")
    git_dirty = models.BooleanField(null=True, blank=True)
    journal_id = models.CharField(max_length=40, blank=True, default="")
    event_seq = models.PositiveIntegerField(default=0)  # the last PromptEvent's seq
    run = models.ForeignKey(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.command} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class PromptEvent(models.Model):
    """One step of an invocation's progress, as its stream sends it: `seq` starts at 1 and
    has no gaps per invocation, so a client resumes with Last-Event-ID (as with RunEvent).
    Kinds: PROMPT_EVENT_KINDS in prompts.events."""

    invocation = models.ForeignKey(
        PromptInvocation, on_delete=models.CASCADE, related_name="events"
    )
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["invocation_id", "seq"]
        constraints = [
            models.UniqueConstraint(
                fields=["invocation", "seq"], name="uniq_prompt_event_seq_per_invocation"
            )
        ]

    def __str__(self) -> str:
        return f"prompt {self.invocation_id} #{self.seq} {self.kind}"
