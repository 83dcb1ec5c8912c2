"""The Celery application. Workers start with `celery -A tekton_site worker`.

Each worker's main process also runs the stale-stage sweeper (runs.services.
runs_requeue_stale, and notifications.services.deliveries_resume_due for notifications
whose message was lost) every TEKTON_HEARTBEAT_SECONDS: Redis redelivers a dead worker's
message only after its visibility timeout, and the sweeper brings the stage back within
one lease instead. Any number of sweepers may run; their updates are conditional.
"""

import logging
import os
import threading

from celery import Celery
from celery.signals import worker_init, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tekton_site.settings")

app = Celery("tekton")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger("tekton.sweeper")
_sweeper_stop = threading.Event()


def sweeper_loop(stop: threading.Event, interval: float | None = None) -> None:
    """Call the sweeper until `stop` is set; errors are logged, never fatal."""
    from django.conf import settings
    from django.db import connection

    from notifications.services import deliveries_resume_due
    from runs.services import runs_requeue_stale

    every = float(interval if interval is not None else settings.TEKTON_HEARTBEAT_SECONDS)
    while not stop.is_set():
        try:
            requeued = runs_requeue_stale()
            if requeued:
                logger.info("sweeper sent %s stage(s) back to run", requeued)
            # Notifications whose message was lost (a worker died holding it).
            resent = deliveries_resume_due()
            if resent:
                logger.info("sweeper sent %s overdue notification(s) again", resent)
        except Exception:
            logger.exception("stale-stage sweep failed")
        finally:
            # A long-lived thread must not keep a connection the database may have dropped.
            connection.close()
        stop.wait(every)


def sweeper_start(
    stop: threading.Event | None = None, interval: float | None = None
) -> threading.Thread:
    """Start the sweeper in a daemon thread of this process."""
    thread = threading.Thread(
        target=sweeper_loop,
        args=(stop or _sweeper_stop, interval),
        name="tekton-sweeper",
        daemon=True,
    )
    thread.start()
    return thread


@worker_init.connect
def _on_worker_init(sender=None, **kwargs) -> None:
    from tekton_site.tracing import tracing_setup

    # The task messages carry the publisher's trace context; this side continues it.
    tracing_setup(service_name="tekton-worker", instrument_django=False)


@worker_ready.connect
def _on_worker_ready(sender=None, **kwargs) -> None:
    _sweeper_stop.clear()
    sweeper_start()
    from tekton_site.metrics import exporter_start

    # This worker process's own metrics (LLM calls, stage outcomes it recorded).
    exporter_start(with_database=False)


@worker_shutdown.connect
def _on_worker_shutdown(sender=None, **kwargs) -> None:
    _sweeper_stop.set()
