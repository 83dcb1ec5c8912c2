"""Admin for notification hooks and their deliveries. A hook's secret is never shown (only
its first characters); hooks are created on the Webhooks page or through the API, which
return the secret once. Deliveries and attempts are history: read-only."""

from __future__ import annotations

from django.contrib import admin, messages

from notifications.models import Delivery, DeliveryAttempt, Hook


@admin.register(Hook)
class HookAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "owner",
        "channel",
        "target",
        "profile_name",
        "is_active",
        "consecutive_failures",
        "last_success_at",
    )
    list_filter = ("channel", "is_active")
    search_fields = ("name", "url", "email", "owner__username")
    readonly_fields = (
        "uid",
        "owner",
        "channel",
        "url",
        "email",
        "secret_hint",
        "paused_at",
        "paused_reason",
        "consecutive_failures",
        "last_success_at",
        "created_at",
        "updated_at",
    )
    fields = ("name", "events", "profile_name", "is_active", *readonly_fields)
    actions = ("pause", "resume")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Pause the selected hooks")
    def pause(self, request, queryset):
        from notifications import services  # on use: the admin loads with every command

        for hook in queryset:
            services.hook_pause(
                hook=hook, reason=f"paused in the admin by {request.user.get_username()}"
            )
        messages.success(request, f"{queryset.count()} hook(s) paused")

    @admin.action(description="Resume the selected hooks")
    def resume(self, request, queryset):
        from notifications import services

        for hook in queryset.filter(is_active=False):
            services.hook_resume(hook=hook)
        messages.success(request, "paused hooks resumed")


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("number", "status_code", "error", "duration_ms", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("kind", "run", "hook", "status", "attempts", "last_status_code", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("hook__name", "uid")
    inlines = [AttemptInline]
    readonly_fields = (
        "uid",
        "hook",
        "run",
        "event",
        "kind",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
        "finished_at",
    )
    fields = readonly_fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
