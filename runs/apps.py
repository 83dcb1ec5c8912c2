from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from runs import metrics
        from runs.events import events_recorded

        events_recorded.connect(metrics.events_observe, dispatch_uid="runs.metrics")
        # Lessons are written, and a run's commit indexed, when their events commit.
        from runs.retrieval_dispatch import events_lessons_queue

        events_recorded.connect(events_lessons_queue, dispatch_uid="runs.retrieval")
