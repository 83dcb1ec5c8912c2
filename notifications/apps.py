from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from notifications import services
        from runs.events import events_recorded

        events_recorded.connect(services.on_events_recorded, dispatch_uid="notifications")
