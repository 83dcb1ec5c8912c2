"""PostgreSQL connection pooling: the settings (from the environment) and the one call a
thread makes to give its connection back; and the embedded SQLite file's switch to WAL.

Every thread that touches the ORM holds its own connection until it closes it. A worker
runs TEKTON_WORKER_CONCURRENCY stage threads (32), and 4 of them beside the web process
would need ~140 connections against PostgreSQL's default max_connections of 100 (issue 14
§2). With Django's psycopg pool each process opens at most TEKTON_DB_POOL_MAX_SIZE
connections, and a thread that waits (on an LLM call, between heartbeats or sweeps) gives
its connection back with `connection_release()` so another thread can use it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

# 4 workers and a web process at 16 each: 80 connections, under PostgreSQL's default 100
# with room for migrations, `tekton` commands, psql and the 3 superuser slots.
POOL_MAX_SIZE = 16
POOL_MIN_SIZE = 2
# Below the stage lease (30 s), so a heartbeat that could not get a connection is logged
# and tried again before the sweeper would give the stage away.
POOL_TIMEOUT_S = 10.0


def _env(environ: Mapping[str, str], name: str, default: str) -> str:
    raw = environ.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = _env(environ, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be at least 1, got {value}")
    return value


def pool_options(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The psycopg pool options for DATABASES["default"]["OPTIONS"]["pool"], or None when
    TEKTON_DB_POOL is false (a pooler such as pgbouncer in front of PostgreSQL)."""
    environ = os.environ if environ is None else environ
    switch = _env(environ, "TEKTON_DB_POOL", "true").lower()
    if switch not in ("true", "false", "1", "0"):
        raise ImproperlyConfigured(f"TEKTON_DB_POOL must be true or false, got {switch!r}")
    if switch in ("false", "0"):
        return None
    # A worker with more stage threads than the default 32 gets half as many connections
    # as threads: 100 threads on 16 connections waited out the pool's timeout while
    # claiming and preparing stages (bench.concurrency: 53 timeouts, 30 stages re-run).
    threads = _positive_int(environ, "TEKTON_WORKER_CONCURRENCY", 2 * POOL_MAX_SIZE)
    max_size = _positive_int(
        environ, "TEKTON_DB_POOL_MAX_SIZE", max(POOL_MAX_SIZE, (threads + 1) // 2)
    )
    min_size = _positive_int(environ, "TEKTON_DB_POOL_MIN_SIZE", min(POOL_MIN_SIZE, max_size))
    if min_size > max_size:
        raise ImproperlyConfigured(
            f"TEKTON_DB_POOL_MIN_SIZE ({min_size}) is above TEKTON_DB_POOL_MAX_SIZE ({max_size})"
        )
    raw = _env(environ, "TEKTON_DB_POOL_TIMEOUT", str(POOL_TIMEOUT_S))
    try:
        timeout = float(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"TEKTON_DB_POOL_TIMEOUT must be a number, got {raw!r}"
        ) from None
    if timeout <= 0:
        raise ImproperlyConfigured(f"TEKTON_DB_POOL_TIMEOUT must be above 0, got {timeout}")
    return {"min_size": min_size, "max_size": max_size, "timeout": timeout, "name": "tekton"}


def postgres_database(url: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """DATABASES["default"] for a PostgreSQL DATABASE_URL, pooled unless turned off."""
    import dj_database_url

    pool = pool_options(environ)
    # CONN_MAX_AGE stays 0 either way: Django refuses persistent connections with a pool,
    # and without one a connection lives for one request or task. Health checks make the
    # pool test a connection before handing it out, so one left broken by a database
    # restart is replaced instead of failing the next query.
    database = dj_database_url.parse(url, conn_max_age=0, conn_health_checks=pool is not None)
    if pool is not None:
        database.setdefault("OPTIONS", {})["pool"] = pool
    return database


def is_pooled(alias: str = "default") -> bool:
    from django.db import connections

    return bool(connections[alias].settings_dict.get("OPTIONS", {}).get("pool"))


def connection_release() -> None:
    """Give this thread's connection back to the pool before it waits (an LLM call, a
    sleep): the next query takes one again, at the cost of a lock, not a connect. Inside a
    transaction, or without a pool (each connect would be a new server connection), the
    connection stays."""
    from django.db import DatabaseError, connection

    if connection.connection is None or connection.in_atomic_block or not is_pooled():
        return
    try:
        connection.close()
    except DatabaseError:
        pass  # a broken connection: the pool discards it


def pool_timeout_reason(exc: BaseException) -> str | None:
    """A readable line when `exc` is the pool handing out no connection in time (its
    PoolTimeout, under Django's OperationalError), else None. The pool times out both when
    every connection is in use and when it cannot open one (the database is down): its
    size tells which."""
    cause: BaseException | None = exc
    while cause is not None and type(cause).__name__ != "PoolTimeout":
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    from django.db import connection

    pool = connection.settings_dict.get("OPTIONS", {}).get("pool") or {}
    timeout, size = pool.get("timeout", "?"), pool.get("max_size", "?")
    stats = pool_stats() or {}
    if stats.get("pool_size", 0) < stats.get("pool_max", 0):
        return (
            f"no database connection within {timeout} s, and the pool could not open a "
            "new one: is PostgreSQL up?"
        )
    return (
        f"no database connection free within {timeout} s: all {size} of this process's "
        "pooled connections are in use (raise TEKTON_DB_POOL_MAX_SIZE, or lower "
        "TEKTON_WORKER_CONCURRENCY)"
    )


def pool_stats(alias: str = "default") -> dict[str, int] | None:
    """psycopg_pool's figures for this process's pool (pool_size, pool_available,
    requests_waiting, ...), None without a pool or before its first connection."""
    from django.db import connections

    if not is_pooled(alias):
        return None
    pools = type(connections[alias])._connection_pools
    pool = pools.get(alias)
    return None if pool is None else dict(pool.get_stats())


def connect_probe(alias: str = "default") -> None:
    """Open (and close) one connection to the database directly, not through the pool:
    a pool that cannot connect retries quietly until its timeout, so a command that
    fails at once on a missing database or a refused login (migrate) asks this first.
    Raises Django's OperationalError with the driver's message."""
    from django.db import OperationalError, connections

    conn = connections[alias]
    if conn.vendor != "postgresql" or not is_pooled(alias):
        return
    import psycopg

    params = {
        k: v
        for k, v in conn.get_connection_params().items()
        if k not in ("context", "cursor_factory")
    }
    try:
        psycopg.connect(**params, connect_timeout=10).close()
    except psycopg.OperationalError as exc:
        raise OperationalError(str(exc)) from exc


def sqlite_wal(path: Path) -> None:
    """Put the embedded SQLite file in WAL mode once, before this process connects.

    The mode is kept in the file, but switching a file takes its exclusive lock, and two
    connections switching a new file at once (the web process's sweeper thread and a
    request, a CLI beside a server) fail "database is locked" instead of waiting: 33 in
    200 tries here. An flock beside the file makes the first switch one at a time; every
    later start reads two header bytes and returns. Errors are left to Django's own
    connection, which reports them in its words."""
    try:
        with open(path, "rb") as f:
            if f.read(20)[18:19] == b"\x02":  # file format version 2: WAL
                return
    except OSError:
        pass
    try:
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            con = sqlite3.connect(path, timeout=30)
            try:
                con.execute("PRAGMA journal_mode=WAL")
            finally:
                con.close()
    except (OSError, sqlite3.Error):
        return
