"""The Celery application. Workers start with `celery -A tekton_site worker`.

Each worker's main process also runs the stale-stage sweeper (runs.services.
runs_requeue_stale, and notifications.services.deliveries_resume_due for notifications
whose message was lost) every TEKTON_HEARTBEAT_SECONDS: Redis redelivers a dead worker's
message only after its visibility timeout, and the sweeper brings the stage back within
one lease instead. Any number of sweepers may run; their updates are conditional.
"""

import os
import threading

from celery import Celery
from celery.signals import worker_init, worker_ready, worker_shutdown

from tekton_site.sweeper import sweeper_start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tekton_site.settings")

app = Celery("tekton")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_sweeper_stop = threading.Event()


@worker_init.connect
def _on_worker_init(sender=None, **kwargs) -> None:
    from tekton_site.tracing import tracing_setup

    # The task messages carry the publisher's trace context; this side continues it.
    tracing_setup(service_name="tekton-worker", instrument_django=False)


@worker_ready.connect
def _on_worker_ready(sender=None, **kwargs) -> None:
    _sweeper_stop.clear()
    sweeper_start(_sweeper_stop)
    from tekton_site.metrics import exporter_start

    # This worker process's own metrics (LLM calls, stage outcomes it recorded).
    exporter_start(with_database=False)


@worker_shutdown.connect
def _on_worker_shutdown(sender=None, **kwargs) -> None:
    _sweeper_stop.set()
