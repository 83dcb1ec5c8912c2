"""Tekton's Prometheus metrics: counted where the data already flows, read at scrape time
where the database is the truth.

Counted in the process that does the work (a worker, or the web process in embedded
mode), through two small hooks: `llm_calls_observe` (the recorder hands it each batch of
engine events) and `events_observe` (a receiver of runs.events.events_recorded: stage and
run outcomes, counted once their transaction commits). Read at scrape time by
`TektonCollector`, registered only where /metrics is served by the web process: runs by
status, stages waiting for a person and for how long, the Celery queue's depth and this
process's event-stream subscribers.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from runs import event_hub, selectors
from runs.models import RunEvent
from swarm.events import EngineEvent, LlmCallDone
from tekton_site.db import pool_stats

logger = logging.getLogger("tekton.runs.metrics")

STAGES_FINISHED = Counter(
    "tekton_stages_finished_total",
    "Stages that ended, by stage and outcome (succeeded, blocked, failed, cancelled, skipped).",
    ["stage", "outcome"],
)
STAGE_DURATION = Histogram(
    "tekton_stage_duration_seconds",
    "Wall time of a stage attempt, by stage and outcome.",
    ["stage", "outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
RUNS_FINISHED = Counter(
    "tekton_runs_finished_total", "Runs that ended, by final status.", ["status"]
)
LLM_CALLS = Counter(
    "tekton_llm_calls_total",
    "LLM calls, by provider, model and outcome (ok, error).",
    ["provider", "model", "outcome"],
)
LLM_DURATION = Histogram(
    "tekton_llm_call_duration_seconds",
    "Latency of an LLM call (its retries included), by provider and model.",
    ["provider", "model"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
LLM_TOKENS = Counter(
    "tekton_llm_tokens_total",
    "Tokens of LLM calls, by provider, model and direction (input, output).",
    ["provider", "model", "direction"],
)
LLM_COST = Counter(
    "tekton_llm_cost_usd_total", "Cost of LLM calls in US dollars.", ["provider", "model"]
)
PROVIDER_ERRORS = Counter(
    "tekton_provider_errors_total",
    "LLM calls that failed after the provider's retries, by provider and error kind.",
    ["provider", "kind"],
)


def _error_kind(error: str) -> str:
    # LlmCallDone.error is "<ExceptionType>: <message>"; the type is the kind.
    head = error.split(":", 1)[0].strip()
    return head if head.isidentifier() else "error"


def llm_calls_observe(items: list[EngineEvent]) -> None:
    """Count the LLM calls of a batch of engine events. Never raises."""
    try:
        for item in items:
            if not isinstance(item, LlmCallDone):
                continue
            provider, model = item.provider[:40] or "unknown", item.model[:200] or "unknown"
            outcome = "error" if item.error else "ok"
            LLM_CALLS.labels(provider, model, outcome).inc()
            LLM_DURATION.labels(provider, model).observe(max(0.0, float(item.latency_s)))
            LLM_TOKENS.labels(provider, model, "input").inc(max(0, int(item.input_tokens)))
            LLM_TOKENS.labels(provider, model, "output").inc(max(0, int(item.output_tokens)))
            LLM_COST.labels(provider, model).inc(max(0.0, float(item.cost_usd or 0)))
            if item.error:
                PROVIDER_ERRORS.labels(provider, _error_kind(item.error)).inc()
    except Exception:
        logger.exception("could not count LLM calls")


def _count(events: list[RunEvent]) -> None:
    for event in events:
        payload = event.payload or {}
        if event.kind == "stage.finished":
            outcome = str(payload.get("status") or "unknown")
            STAGES_FINISHED.labels(event.stage, outcome).inc()
            if isinstance(payload.get("duration_s"), int | float):
                STAGE_DURATION.labels(event.stage, outcome).observe(payload["duration_s"])
        elif event.kind == "stage.blocked":
            STAGES_FINISHED.labels(event.stage, "blocked").inc()
        elif event.kind in ("run.finished", "run.failed", "run.cancelled"):
            RUNS_FINISHED.labels(event.kind.split(".", 1)[1]).inc()


def events_observe(sender, events: list[RunEvent], **kwargs) -> None:
    """runs.events.events_recorded receiver: count outcomes once the events commit."""
    if any(
        e.kind in ("stage.finished", "stage.blocked") or e.kind.startswith("run.") for e in events
    ):
        transaction.on_commit(lambda: _count(events))


# --- read at scrape time -------------------------------------------------------------------
_QUEUE_CACHE_S = 5.0
_queue_lock = threading.Lock()
_queue_cache: tuple[float, int | None] = (0.0, None)


def queue_depth() -> int | None:
    """Messages waiting in TEKTON_QUEUE (celery mode; None otherwise or when the broker
    does not answer). Cached a few seconds: scrapes must not hammer the broker."""
    global _queue_cache
    if settings.TEKTON_EXECUTION != "celery":
        return None
    with _queue_lock:
        at, value = _queue_cache
        if time.monotonic() - at < _QUEUE_CACHE_S:
            return value
    from kombu.exceptions import ChannelError

    from tekton_site.celery import app

    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=0, timeout=settings.TEKTON_BROKER_CHECK_TIMEOUT_S)
            try:
                _, value, _ = conn.default_channel.queue_declare(
                    queue=settings.TEKTON_QUEUE, passive=True
                )
            except ChannelError:
                value = 0  # the queue does not exist yet: nothing was ever queued
    except Exception as exc:
        logger.warning("metrics: the broker did not answer: %s", exc)
        value = None
    with _queue_lock:
        _queue_cache = (time.monotonic(), value)
    return value


class DbPoolCollector:
    """This process's PostgreSQL pool (tekton_site.db), in every process's exposition: a
    pool always full with requests waiting wants a bigger TEKTON_DB_POOL_MAX_SIZE, or a
    thread that holds its connection while it waits."""

    def collect(self):
        stats = pool_stats()
        if stats is None:
            return  # no pool, or no connection asked for yet
        idle = stats.get("pool_available", 0)
        connections = GaugeMetricFamily(
            "tekton_db_pool_connections",
            "This process's pooled PostgreSQL connections, in use by a thread or idle.",
            labels=["state"],
        )
        connections.add_metric(["in_use"], stats.get("pool_size", 0) - idle)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily(
            "tekton_db_pool_max_connections",
            "The most connections this process's pool opens (TEKTON_DB_POOL_MAX_SIZE).",
            value=stats.get("pool_max", 0),
        )
        yield GaugeMetricFamily(
            "tekton_db_pool_requests_waiting",
            "Threads waiting for a pooled connection now.",
            value=stats.get("requests_waiting", 0),
        )
        yield CounterMetricFamily(
            "tekton_db_pool_request_errors",
            "Requests for a pooled connection that failed (most often TEKTON_DB_POOL_TIMEOUT).",
            value=stats.get("requests_errors", 0),
        )


REGISTRY.register(DbPoolCollector())


class TektonCollector:
    """Gauges from the database, the broker and this process's event hub, at scrape time."""

    def collect(self):
        runs = GaugeMetricFamily("tekton_runs", "Runs by status.", labels=["status"])
        for status, n in selectors.runs_count_by_status().items():
            runs.add_metric([status], n)
        yield runs
        now = timezone.now()
        waits = [max(0.0, (now - at).total_seconds()) for at in selectors.stages_blocked_since()]
        yield GaugeMetricFamily(
            "tekton_stages_blocked",
            "Stages waiting for a person (approve, retry or abort).",
            value=len(waits),
        )
        yield GaugeMetricFamily(
            "tekton_stages_blocked_oldest_seconds",
            "How long the longest-waiting blocked stage has waited.",
            value=max(waits, default=0.0),
        )
        yield GaugeMetricFamily(
            "tekton_stages_blocked_waiting_seconds",
            "Seconds all blocked stages have waited, added up.",
            value=sum(waits),
        )
        depth = queue_depth()
        if depth is not None:
            queue = GaugeMetricFamily(
                "tekton_celery_queue_messages",
                "Messages waiting in the Celery queue.",
                labels=["queue"],
            )
            queue.add_metric([settings.TEKTON_QUEUE], depth)
            yield queue
        yield GaugeMetricFamily(
            "tekton_event_stream_subscribers",
            "Open event streams (SSE and WebSocket) of this process.",
            value=event_hub.subscribers_total(),
        )
