"""Admin for run history. History is not edited by hand: everything is read-only; a run
may be deleted (with its stages, events, artifacts rows and calls) to clean up."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from runs.models import Artifact, LlmCall, Run, RunEvent, StageAttempt, StageRun


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class StageRunInline(admin.TabularInline):
    model = StageRun
    extra = 0
    can_delete = False
    fields = (
        "position",
        "stage",
        "status",
        "attempt",
        "confidence",
        "approval",
        "reason",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "started_at",
        "finished_at",
        "worker",
    )
    readonly_fields = fields
    ordering = ("position",)
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "status",
        "profile_name",
        "short_goal",
        "owner",
        "total_tokens",
        "cost_usd",
        "created_at",
    )
    list_filter = ("status", "profile_name")
    search_fields = ("goal", "repo_path", "reason")
    date_hierarchy = "created_at"
    readonly_fields = (
        "goal",
        "repo_path",
        "profile_name",
        "config",
        "stage_from",
        "stage_to",
        "status",
        "reason",
        "owner",
        "parent",
        "forked_from_stage",
        "output_dir",
        "event_count",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "created_at",
        "started_at",
        "finished_at",
    )
    fields = readonly_fields
    inlines = [StageRunInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(_event_count=Count("events", distinct=True))
        )

    @admin.display(description="goal")
    def short_goal(self, obj: Run) -> str:
        return obj.goal if len(obj.goal) <= 60 else obj.goal[:59] + "…"

    @admin.display(description="events", ordering="_event_count")
    def event_count(self, obj: Run) -> int:
        count = getattr(obj, "_event_count", None)
        return count if count is not None else obj.events.count()

    @admin.display(description="tokens")
    def total_tokens(self, obj: Run) -> int:
        return obj.total_tokens


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdmin):
    list_display = ("run_id", "seq", "kind", "stage", "created_at")
    list_filter = ("kind",)
    search_fields = ("=run__id", "stage")
    list_select_related = ("run",)
    readonly_fields = ("run", "seq", "kind", "stage", "payload", "created_at")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a gap in seq would break every follower's reconciliation


@admin.register(Artifact)
class ArtifactAdmin(ReadOnlyAdmin):
    list_display = ("run_id", "stage", "kind", "name", "size", "sha256", "created_at")
    list_filter = ("kind", "stage")
    search_fields = ("=run__id", "name")
    readonly_fields = (
        "run",
        "stage",
        "kind",
        "name",
        "path",
        "sha256",
        "size",
        "content",
        "created_at",
    )

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(StageAttempt)
class StageAttemptAdmin(ReadOnlyAdmin):
    list_display = ("run_id", "stage", "number", "status", "confidence", "created_at")
    list_filter = ("status", "stage")
    search_fields = ("=run__id",)
    list_select_related = ("run",)
    readonly_fields = (
        "run",
        "stage",
        "number",
        "status",
        "reason",
        "note",
        "artifact",
        "patch",
        "confidence",
        "approval",
        "started_at",
        "finished_at",
        "created_at",
    )

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # goes with its run


@admin.register(LlmCall)
class LlmCallAdmin(ReadOnlyAdmin):
    list_display = (
        "run_id",
        "stage",
        "role",
        "round",
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
        "error",
    )
    list_filter = ("provider", "stage", "role")
    search_fields = ("=run__id", "model")
    readonly_fields = (
        "run",
        "stage",
        "role",
        "round",
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
        "attempt",
        "retries",
        "error",
        "created_at",
    )

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
