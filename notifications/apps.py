from django.apps import AppConfig


def _on_events_recorded(sender, **kwargs):
    # Imported on the first event, not at start-up: the sender (httpx) is heavy and a
    # read-only command records no event (the CLI starts at once).
    from notifications import services

    return services.on_events_recorded(sender, **kwargs)


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from runs.events import events_recorded

        events_recorded.connect(_on_events_recorded, dispatch_uid="notifications")
