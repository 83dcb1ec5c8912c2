"""OpenTelemetry set-up for a Tekton process: off unless the operator configures an OTLP
exporter with the standard variables (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp; OTEL_SDK_DISABLED=true
or OTEL_TRACES_EXPORTER=none keep it off). Spans go out over OTLP/HTTP (protobuf), which
Langfuse, Phoenix, Jaeger, Tempo and the OpenTelemetry Collector all accept; every other
OTEL_* variable (headers, service name, resource attributes, sampler) is honoured.

The web process (tekton_site.asgi) instruments Django and Celery's publishing side; a
worker (tekton_site.celery) Celery's consuming side, so the trace context travels in each
task message. Content capture (redacted prompts and answers in span attributes) is off
unless OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random

from opentelemetry.sdk.trace.id_generator import IdGenerator

logger = logging.getLogger("tekton.site.tracing")

_configured = False
# (trace id, span id) the next span must take: a run's span gets ids derived from its uid,
# so stages on any worker can name it as their parent before it is written.
_forced_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "tekton_forced_span_ids", default=None
)


class RunIdGenerator(IdGenerator):
    """Random ids, except for a span started inside `forced_ids(...)`."""

    def generate_span_id(self) -> int:
        forced = _forced_ids.get()
        return forced[1] if forced else random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        forced = _forced_ids.get()
        return forced[0] if forced else random.getrandbits(128) or 1


class forced_ids:  # noqa: N801 - used as a context manager, like a function
    def __init__(self, trace_id: int, span_id: int):
        self.ids = (trace_id, span_id)

    def __enter__(self):
        self.token = _forced_ids.set(self.ids)

    def __exit__(self, *exc):
        _forced_ids.reset(self.token)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("true", "1")


def tracing_wanted() -> bool:
    """Whether the environment asks for trace export."""
    if _env_true("OTEL_SDK_DISABLED"):
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or exporter == "otlp"
    )


def tracing_setup(*, service_name: str, instrument_django: bool) -> bool:
    """Install the SDK (tracer provider, batch OTLP/HTTP exporter) once per process when
    tracing_wanted(); instrument Celery (both sides) and, in the web process, Django.
    Call before Django builds its request handler. Returns whether tracing is on."""
    global _configured
    if _configured:
        return True
    if not tracing_wanted():
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from swarm import telemetry

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes), id_generator=RunIdGenerator())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    telemetry.configure(
        capture_content=_env_true("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
    )
    CeleryInstrumentor().instrument()
    if instrument_django:
        from django.conf import settings
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        # /healthz, /readyz and /metrics are polled all day: no trace for them.
        DjangoInstrumentor().instrument(excluded_urls="healthz,readyz,metrics,static/")
        # The instrumentation's middleware (put first) reads the request's host; the probes
        # are answered before any host check, so they go back in front of it.
        probe = "tekton_site.health.HealthProbeMiddleware"
        if probe in settings.MIDDLEWARE:
            settings.MIDDLEWARE.remove(probe)
            settings.MIDDLEWARE.insert(0, probe)
    from runs import tracing as run_tracing

    run_tracing.receivers_connect()
    _configured = True
    logger.info("tracing on: spans go to the OTLP endpoint")
    return True
