"""Run history: a run, its stages, its events, its artifacts and every LLM call it made."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        BLOCKED = "blocked"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    # The run's identity outside this database (artifact folders, branches, workspaces,
    # shared keys): two databases sharing a data directory both have a run 1, never the
    # same uid. Frozen at creation, like the namespace it was created in.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    namespace = models.CharField(max_length=40, default="tekton", editable=False)
    goal = models.TextField()
    repo_path = models.CharField(max_length=1024)
    # HEAD of the repository when the run was created: every stage works from it, whatever
    # happens to the checkout afterwards. "" for a repository with no commit yet.
    base_commit = models.CharField(max_length=64, blank=True, default="")
    # Where the run's change is, once its code stage committed it: the branch (the run's
    # name) in the target repository and the commit it points at.
    branch = models.CharField(max_length=200, blank=True, default="")
    head_commit = models.CharField(max_length=64, blank=True, default="")
    profile_name = models.CharField(max_length=100)
    # The resolved configuration at creation time: later profile edits never change a past run.
    config = models.JSONField(default=dict)
    stage_from = models.CharField(max_length=32)
    stage_to = models.CharField(max_length=32)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    reason = models.TextField(blank=True, default="")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
    )
    output_dir = models.CharField(max_length=1024, blank=True, default="")
    # A fork (runs.services.run_fork): the run it reuses the finished stages of, and the
    # stage it ran from. The parent may be deleted; the fork keeps its copies.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="forks"
    )
    forked_from_stage = models.CharField(max_length=32, blank=True, default="")
    # Last RunEvent.seq handed out; incremented under a row lock so seq has no gaps.
    event_seq = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    # Of input_tokens: read from the vendors' prompt caches / written to them.
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at", "-id"])]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"

    @property
    def short_uid(self) -> str:
        return self.uid.hex[:8]

    @property
    def slug(self) -> str:
        """`run-<id>-<short uid>`: unique across databases, readable in a listing."""
        return f"run-{self.pk}-{self.short_uid}"

    @property
    def name(self) -> str:
        """The run's one name outside the database, `<namespace>/run-<id>-<short uid>`: its
        branch, and the prefix of its artifact folder, workspace and storage keys."""
        return f"{self.namespace}/{self.slug}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        return uncached_input_tokens(self)

    @property
    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at
        if end is None:
            end = timezone.now()
        return (end - self.started_at).total_seconds()


class StageRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"  # waiting for its dependencies or for a worker
        RUNNING = "running"
        BLOCKED = "blocked"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"  # reused from a resumed run, or approved without running
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.SKIPPED, Status.CANCELLED)

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="stages")
    stage = models.CharField(max_length=32)
    position = models.PositiveSmallIntegerField()  # 1..9, the stage's place in the run order
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempt = models.PositiveSmallIntegerField(default=0)  # deliveries that claimed it
    note = models.TextField(blank=True, default="")  # a person's note for a retry
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, default="")
    # A fresh token per claim: an executor keeps writing only while the row still holds its
    # token, so a worker that lost its lease (or a run that was resumed) cannot overwrite
    # the stage after someone else claimed it, even when `attempt` was reset.
    claim = models.CharField(max_length=32, blank=True, default="")
    confidence = models.FloatField(null=True, blank=True)
    approval = models.FloatField(null=True, blank=True)  # weighted quorum result
    votes = models.JSONField(default=list, blank=True)
    mediator = models.JSONField(default=dict, blank=True)
    checks = models.JSONField(default=list, blank=True)
    # A blocked stage's best attempt ({"artifact": {...} | None, "patch": str | None}); it
    # becomes the Artifact only when a person approves it, so no artifact is written twice.
    draft = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True, default="")
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    input_tokens = models.PositiveBigIntegerField(default=0)
    # Of input_tokens: read from the vendors' prompt caches / written to them.
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run_id", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "stage"], name="uniq_stage_per_run")]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"run {self.run_id} / {self.stage} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def uncached_input_tokens(self) -> int:
        return uncached_input_tokens(self)

    @property
    def duration_s(self) -> float | None:
        if not (self.started_at and self.finished_at):
            return None
        return (self.finished_at - self.started_at).total_seconds()


class StageAttempt(models.Model):
    """A stage attempt a person set aside by retrying (or resuming) the stage: its draft
    and outcome as they were, kept so the run page can compare attempts. The stage's
    current attempt stays on its StageRun (and its Artifact once accepted)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="attempts")
    stage = models.CharField(max_length=32)
    number = models.PositiveSmallIntegerField()  # 1, 2, ... in the order they were set aside
    status = models.CharField(max_length=16)  # the StageRun status it ended in
    reason = models.TextField(blank=True, default="")
    note = models.TextField(blank=True, default="")  # the note it ran with
    artifact = models.JSONField(null=True, blank=True)  # its draft artifact, if any
    patch = models.TextField(blank=True, default="")  # code: its draft change
    confidence = models.FloatField(null=True, blank=True)
    approval = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "stage", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "stage", "number"], name="uniq_attempt_per_stage"
            )
        ]

    def __str__(self) -> str:
        return f"run {self.run_id} / {self.stage} attempt {self.number} ({self.status})"


class RunEvent(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=40)
    stage = models.CharField(max_length=32, blank=True, default="")
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["run", "seq"], name="uniq_event_seq_per_run")
        ]
        # Every stage's history lessons (runs.lessons) look up a stage's blocked and
        # retried events across all runs: without it, a scan of every event ever stored.
        indexes = [models.Index(fields=["stage", "kind"], name="runs_event_stage_kind")]

    def __str__(self) -> str:
        return f"run {self.run_id} #{self.seq} {self.kind}"


class Artifact(models.Model):
    class Kind(models.TextChoices):
        JSON = "json"  # the stage's schema-checked artifact
        PATCH = "patch"  # code stage: the unified diff
        SUMMARY = "summary"  # diamond_summary.json

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="artifacts")
    stage = models.CharField(max_length=32)  # "" for the run summary
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=200)  # file name, e.g. plan.json
    path = models.CharField(max_length=1024)  # relative to the artifact root
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    # The artifact itself is the record (the file is a copy): the JSON of kind json and
    # summary in `content`, the patch's text in `text`. A stage on another machine reads
    # its predecessors, and a download is served, without sharing the artifact directory.
    content = models.JSONField(null=True, blank=True)
    text = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "stage", "kind"], name="uniq_artifact_per_stage_kind"
            ),
        ]
        # The history lessons read earlier runs' review artifacts (runs.lessons).
        indexes = [models.Index(fields=["stage", "kind"], name="runs_artifact_stage_kind")]

    def __str__(self) -> str:
        return f"run {self.run_id} / {self.name}"


def uncached_input_tokens(row: Any) -> int:
    """The input tokens of a run, stage or call billed at the full input price."""
    return max(row.input_tokens - row.cached_input_tokens - row.cache_write_tokens, 0)


class LlmCall(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="llm_calls")
    stage = models.CharField(max_length=32)
    role = models.CharField(max_length=16)
    round = models.PositiveSmallIntegerField()
    provider = models.CharField(max_length=40)
    model = models.CharField(max_length=200)
    input_tokens = models.PositiveIntegerField(default=0)
    cached_input_tokens = models.PositiveIntegerField(default=0)  # of input_tokens
    cache_write_tokens = models.PositiveIntegerField(default=0)  # of input_tokens
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    attempt = models.PositiveSmallIntegerField(default=1)  # the stage attempt it belongs to
    retries = models.PositiveSmallIntegerField(default=0)  # provider-level retries inside the call
    error = models.TextField(blank=True, default="")
    # When the call ended, as the engine saw it (records are written in batches).
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run_id", "id"]
        indexes = [models.Index(fields=["run", "stage"])]

    def __str__(self) -> str:
        return f"run {self.run_id} / {self.stage} / {self.role} r{self.round} ({self.model})"


class TestRunRecord(models.Model):
    """One measured run of a repository's tests (swarm.testing.TestRun as JSON): the record
    of the evidence. A base commit's results are reused by (repository, commit, command)
    across stages and runs; each run keeps its own rows (`reused` marks a copied one)."""

    __test__ = False  # not a pytest class despite the name

    class Kind(models.TextChoices):
        BASE = "base"  # the run's base commit
        BRANCH = "branch"  # base plus the code stage's change
        STAGE = "stage"  # a run_tests call of an agent

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="test_runs")
    stage = models.CharField(max_length=32)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    repo_path = models.CharField(max_length=1024)
    commit = models.CharField(max_length=64)
    command_key = models.CharField(max_length=64)  # sha256 of the command and its setup
    data = models.JSONField(default=dict)
    reused = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "id"]
        indexes = [models.Index(fields=["repo_path", "commit", "command_key", "kind"])]

    def __str__(self) -> str:
        return f"run {self.run_id} / {self.stage} {self.kind} tests at {self.commit[:12]}"


class BudgetReservation(models.Model):
    """What one provider call in flight holds of its run's budgets: the call's estimate,
    reserved before it starts and deleted when it settles (runs/budgets.py). A stage's
    rows left by a worker that died go when the stage is claimed again."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="reservations")
    stage_run = models.ForeignKey(StageRun, on_delete=models.CASCADE, related_name="+")
    claim = models.CharField(max_length=32)  # the StageRun.claim of the attempt holding it
    role = models.CharField(max_length=16)
    tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "id"]
        indexes = [models.Index(fields=["run"]), models.Index(fields=["stage_run", "claim"])]

    def __str__(self) -> str:
        return f"run {self.run_id} / {self.role}: {self.tokens} tokens, ${self.cost_usd}"
