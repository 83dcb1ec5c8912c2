from django.contrib import admin

from prompts.models import PromptInvocation


@admin.register(PromptInvocation)
class PromptInvocationAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "who", "command", "intent", "status", "model", "cost_usd")
    list_filter = ("status", "agent", "source", "intent")
    search_fields = ("prompt", "who", "model")
    readonly_fields = [f.name for f in PromptInvocation._meta.fields]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False  # rows are what invocations did; they are made by running one
