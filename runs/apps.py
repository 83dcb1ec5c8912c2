from django.apps import AppConfig


def _events_observe(sender, **kwargs) -> None:
    # runs.metrics (prometheus_client's metrics, the event hub) is imported by the first
    # events that commit, not by every process that sets Django up: the read commands of
    # the CLI record none. /metrics imports it itself (tekton_site.metrics).
    from runs import metrics

    metrics.events_observe(sender, **kwargs)


class RunsConfig(AppConfig):
    name = "runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from runs.events import events_recorded

        events_recorded.connect(_events_observe, dispatch_uid="runs.metrics")
        # Lessons are written, and a run's commit indexed, when their events commit.
        from runs.retrieval_dispatch import events_lessons_queue

        events_recorded.connect(events_lessons_queue, dispatch_uid="runs.retrieval")
