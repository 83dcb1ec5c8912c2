"""The stale-stage sweeper loop, in every process that executes stages: each Celery
worker, and in embedded mode the web process (tekton_site/asgi.py), so the same lease rule
holds in every mode (runs.services.runs_requeue_stale). Notifications whose message was
lost are sent again by the same loop.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("tekton.sweeper")


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
        args=(stop or threading.Event(), interval),
        name="tekton-sweeper",
        daemon=True,
    )
    thread.start()
    return thread
