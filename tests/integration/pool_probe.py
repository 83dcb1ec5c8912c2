"""`python -m tests.integration.pool_probe THREADS | exhausted HOLD_S`: in a services-mode process (the
caller's DATABASE_URL and TEKTON_DB_POOL_* settings), start THREADS stale-stage sweepers
(tekton_site.sweeper, the worker's long-lived loop) and THREADS live-stream reads
(runs.event_hub, on threads that stay alive afterwards), wait until all of them did their
database work and are waiting, and print one JSON line: this process's pool statistics
then, the most connections PostgreSQL showed for it, and any error. `exhausted`: see
exhausted().
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time


def main(threads: int) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tekton_site.settings")
    import django

    django.setup()
    import psycopg
    from django.conf import settings
    from django.db import connection

    from runs.event_hub import _last_seq_sync, _with_reconnect
    from tekton_site.db import pool_stats
    from tekton_site.sweeper import sweeper_loop

    db = settings.DATABASES["default"]
    app_name = db["OPTIONS"]["application_name"]
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        # Its own plain connection, outside the pool and under another application name.
        with psycopg.connect(os.environ["DATABASE_URL"].split("?")[0], autocommit=True) as conn:
            while not done.is_set():
                (n,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = %s",
                    (app_name,),
                ).fetchone()
                peak = max(peak, n)
                time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stop = threading.Event()
    errors: list[str] = []
    read = threading.Barrier(threads + 1)
    leave = threading.Event()

    def stream_reader() -> None:
        try:
            _with_reconnect(_last_seq_sync, 1)
        except Exception as exc:  # reported, never swallowed
            errors.append(repr(exc))
        read.wait()
        leave.wait()  # alive, as a stream thread is between reads

    sweepers = [
        threading.Thread(target=sweeper_loop, args=(stop, 60.0), daemon=True)
        for _ in range(threads)
    ]
    readers = [threading.Thread(target=stream_reader, daemon=True) for _ in range(threads)]
    for thread in sweepers + readers:
        thread.start()
    read.wait(timeout=30)
    # Each sweep takes one connection (its two reads share it) and gives it back.
    deadline = time.monotonic() + 20
    stats = pool_stats() or {}
    while time.monotonic() < deadline:
        stats = pool_stats() or {}
        if (
            stats.get("requests_num", 0) >= 2 * threads
            and stats["pool_available"] == stats["pool_size"]
        ):
            break
        time.sleep(0.05)
    alive = sum(t.is_alive() for t in sweepers + readers)
    done.set()
    watcher.join()
    stop.set()
    leave.set()
    connection.close()
    return {
        "stats": stats,
        "alive": alive,
        "peak_connections": peak,
        "errors": errors,
    }


def exhausted(hold_s: float) -> dict:
    """One thread holds the pool's only connection for `hold_s` while another writes
    through the engine bridge's wait (runs.engine_bridge._waiting_for_the_pool): the
    writer's outcome, how long it waited and what it logged."""
    import logging

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tekton_site.settings")
    import django

    django.setup()
    from django.db import connection, transaction

    from runs.engine_bridge import _waiting_for_the_pool
    from runs.services import runs_requeue_stale

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logging.getLogger("tekton.runs.engine_bridge").addHandler(Keep())
    holding = threading.Event()

    def hold() -> None:
        with transaction.atomic():
            connection.cursor().execute("SELECT 1")
            holding.set()
            time.sleep(hold_s)
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(10)
    started = time.monotonic()
    result: dict = {}
    try:
        result["requeued"] = _waiting_for_the_pool(runs_requeue_stale, _Stage())
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        from tekton_site.db import pool_timeout_reason

        result["reason"] = pool_timeout_reason(exc)
    result["waited_s"] = time.monotonic() - started
    holder.join()
    connection.close()
    return {**result, "log": lines}


class _Stage:
    pk = 0


if __name__ == "__main__":
    if sys.argv[1] == "exhausted":
        print(json.dumps(exhausted(float(sys.argv[2]))), flush=True)
    else:
        print(json.dumps(main(int(sys.argv[1]))), flush=True)
