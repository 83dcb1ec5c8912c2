"""The Celery application. Workers start with `celery -A tekton_site worker`.

Each worker's main process also runs the stale-stage sweeper (runs.services.
runs_requeue_stale, and notifications.services.deliveries_resume_due for notifications
whose message was lost) every TEKTON_HEARTBEAT_SECONDS: Redis redelivers a dead worker's
message only after its visibility timeout, and the sweeper brings the stage back within
one lease instead. Any number of sweepers may run; their updates are conditional.
"""

import logging
import os
import sys
import threading

from celery import Celery
from celery.signals import worker_init, worker_ready, worker_shutdown
from celery.worker.consumer import Consumer

from tekton_site.sweeper import sweeper_start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tekton_site.settings")

app = Celery("tekton")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_sweeper_stop = threading.Event()
logger = logging.getLogger("tekton.celery")


class TektonConsumer(Consumer):
    """Celery's consumer, surviving a broker that went away while messages were unacked.

    On a lost connection Celery 5.7 calls `connection.collect()`, which detaches the
    transport from its client, then `connection.close()`: the channel's restore of the
    unacked messages, and later the ack of each stage that was running, go through that
    detached transport and raise AttributeError, which stops the worker for good
    ("Unrecoverable error") when Redis restarts under a running stage. Keeping the client
    on the old transport lets them reach the broker once it is back (or fail with a
    connection error, which kombu handles), as before 5.7."""

    def on_connection_error_after_connected(self, exc):
        connection = self.connection
        transport = getattr(connection, "_transport", None)
        client = getattr(transport, "client", None)
        if transport is not None and client is not None:
            collect = connection.collect

            def collect_keeping_client(*args, **kwargs):
                try:
                    return collect(*args, **kwargs)
                finally:
                    transport.client = client

            connection.collect = collect_keeping_client
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as error:  # a kombu that detaches elsewhere: reconnect anyway
            self.connection = None
            logger.warning("broker connection closed uncleanly (%s); reconnecting", error)


@worker_init.connect
def _on_worker_init(sender=None, **kwargs) -> None:
    from tekton_site.tracing import tracing_setup

    # The task messages carry the publisher's trace context; this side continues it.
    tracing_setup(service_name="tekton-worker", instrument_django=False)
    worker_switch_interval_set()


def worker_switch_interval_set() -> None:
    """This worker process's GIL switch interval (TEKTON_WORKER_SWITCH_INTERVAL_MS)."""
    from django.conf import settings

    sys.setswitchinterval(settings.TEKTON_WORKER_SWITCH_INTERVAL_MS / 1000)


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
