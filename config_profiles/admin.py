"""Admin for model profiles. Saves go through config_profiles.services, so the admin refuses
exactly what the services refuse, with the message beside the field that is wrong."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from config_profiles.models import LearnedCapability, Profile
from config_profiles.services import PROFILE_FIELDS, profile_delete, profile_validate
from tekton_site.errors import FieldError


class ProfileAdminForm(forms.ModelForm):
    class Meta:
        model = Profile
        fields = list(PROFILE_FIELDS)

    def clean(self):
        cleaned = super().clean()
        data = {f: cleaned[f] for f in PROFILE_FIELDS if f in cleaned}
        try:
            valid = profile_validate(data)
        except FieldError as err:
            # "stage_models.plan.proponent" belongs beside the stage_models field.
            field = err.field.split(".", 1)[0].split("[", 1)[0]
            self.add_error(field if field in self.fields else None, err.message)
            return cleaned
        if (
            self.instance.pk
            and self.instance.is_default
            and valid.get("name") != self.instance.name
        ):
            self.add_error("name", "the default profile cannot be renamed")
        cleaned.update(valid)
        return cleaned


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    form = ProfileAdminForm
    list_display = (
        "name",
        "rounds",
        "quorum",
        "threshold",
        "budget_tokens",
        "budget_cost_usd",
        "updated_at",
    )
    search_fields = ("name", "description")
    readonly_fields = ("created_at", "updated_at")

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_default:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        try:
            profile_delete(profile=obj)
        except FieldError as err:
            self.message_user(request, err.message, level=messages.ERROR)

    def delete_queryset(self, request, queryset):
        for profile in queryset:
            self.delete_model(request, profile)


@admin.register(LearnedCapability)
class LearnedCapabilityAdmin(admin.ModelAdmin):
    """Read-only: rows come from servers' refusals. Delete one after a server upgrade (the
    processes running now keep what they learned until they restart)."""

    list_display = ("model", "base_url", "backend", "refused", "learned_at")
    readonly_fields = ("backend", "base_url", "model", "refused", "detail", "learned_at")

    def has_add_permission(self, request) -> bool:
        return False
