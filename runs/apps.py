from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from runs import metrics
        from runs.events import events_recorded

        events_recorded.connect(metrics.events_observe, dispatch_uid="runs.metrics")
