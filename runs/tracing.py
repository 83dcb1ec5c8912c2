"""A run's spans: one `run <name>` span over the whole run, and a `stage <stage>` span
per stage attempt, parent of the engine's agent, LLM and tool spans (swarm.telemetry).

A run lives across processes and may wait for days, so its span cannot stay open in one
of them. Its trace and span ids are derived from the run's uid instead: every stage, on
any worker, names the run's span as its parent before that span exists, and the span is
written when the run ends (run.finished, run.failed, run.cancelled), from its creation
to its end. A stage span also links to the span current where it runs (the Celery task,
whose context came in the task message from the web request or the stage before).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from runs.events import FINAL_KINDS, events_recorded
from runs.models import Run, RunEvent, StageRun
from swarm.context import StageOutcome
from swarm.redact import redact

logger = logging.getLogger("tekton.runs.tracing")

TRACER = "tekton.runs"


def run_span_ids(run: Run) -> tuple[int, int]:
    """(trace id, span id) of the run's span, the same in every process."""
    span_id = int.from_bytes(hashlib.sha256(run.uid.bytes).digest()[:8], "big")
    return run.uid.int or 1, span_id or 1


def run_context(run: Run):
    trace_id, span_id = run_span_ids(run)
    parent = SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _run_attributes(run: Run) -> dict:
    return {
        "tekton.run.id": run.pk,
        "tekton.run.uid": str(run.uid),
        "tekton.run.name": run.name,
        "tekton.profile": run.profile_name,
    }


@contextmanager
def stage_span(stage: StageRun, run: Run) -> Iterator[trace.Span]:
    """The span of one stage attempt, child of the run's span; failures mark it."""
    here = trace.get_current_span().get_span_context()
    links = [Link(here)] if here.is_valid else []
    attributes = {
        **_run_attributes(run),
        "tekton.stage": stage.stage,
        "tekton.stage.attempt": stage.attempt,
        "tekton.worker": stage.worker,
    }
    with trace.get_tracer(TRACER).start_as_current_span(
        f"stage {stage.stage}",
        context=run_context(run),
        links=links,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, redact(str(exc))[:300]))
            raise


def stage_span_outcome(span: trace.Span, outcome: StageOutcome) -> None:
    span.set_attributes(
        {
            "tekton.stage.outcome": outcome.status,
            "gen_ai.usage.input_tokens": outcome.input_tokens,
            "gen_ai.usage.output_tokens": outcome.output_tokens,
            "tekton.cost_usd": float(outcome.cost_usd),
        }
    )
    for name in ("confidence", "approval"):
        value = getattr(outcome, name)
        if value is not None:
            span.set_attribute(f"tekton.stage.{name}", float(value))


def run_span_emit(run_id: int) -> None:
    """Write the run's span (ids from its uid), from its creation to its end. Never raises."""
    from tekton_site.tracing import forced_ids

    try:
        run = Run.objects.get(pk=run_id)
        start = run.created_at
        end = run.finished_at or run.updated_at
        with forced_ids(*run_span_ids(run)):
            span = trace.get_tracer(TRACER).start_span(
                f"run {run.name}",
                context=trace.set_span_in_context(trace.INVALID_SPAN),
                attributes={
                    **_run_attributes(run),
                    "tekton.run.status": run.status,
                    "tekton.run.stages": ",".join((run.config or {}).get("stages") or []),
                    "gen_ai.usage.input_tokens": run.input_tokens,
                    "gen_ai.usage.output_tokens": run.output_tokens,
                    "tekton.cost_usd": float(run.cost_usd),
                },
                start_time=int(start.timestamp() * 1e9),
            )
        if run.status != Run.Status.SUCCEEDED:
            span.set_status(Status(StatusCode.ERROR, redact(run.reason)[:300]))
        span.end(end_time=int(max(end, start).timestamp() * 1e9))
    except Exception:
        logger.exception("run %s: could not write its span", run_id)


def _on_events(sender, events: list[RunEvent], **kwargs) -> None:
    ended = {e.run_id for e in events if e.kind in FINAL_KINDS}
    for run_id in ended:
        transaction.on_commit(lambda run_id=run_id: run_span_emit(run_id))


def receivers_connect() -> None:
    """Write run spans when runs end (called by tekton_site.tracing once tracing is on)."""
    events_recorded.connect(_on_events, dispatch_uid="runs.tracing")
