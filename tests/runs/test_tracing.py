"""A run's span (ids from its uid, written when it ends) is the parent of every stage's
span, whatever process runs the stage; a stage span links to the span it ran under."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from runs.dispatch import run_inline
from runs.events import events_recorded
from runs.models import Run
from runs.tracing import receivers_connect, run_span_ids
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def traced(otel_spans):
    receivers_connect()
    yield otel_spans
    events_recorded.disconnect(dispatch_uid="runs.tracing")


def test_stages_are_children_of_the_run_span_written_at_the_end(
    traced, git_repo, fake_engine, django_capture_on_commit_callbacks
):
    run = RunFactory(repo_path=str(git_repo), stage_from="plan", stage_to="research")
    tracer = trace.get_tracer("tests")
    with (
        django_capture_on_commit_callbacks(execute=True),
        tracer.start_as_current_span("task") as task,
    ):
        run_inline(run.pk)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    spans = {s.name: s for s in traced.get_finished_spans()}
    trace_id, span_id = run_span_ids(run)
    root = spans[f"run {run.name}"]
    assert (root.context.trace_id, root.context.span_id) == (trace_id, span_id)
    assert root.parent is None
    assert root.attributes["tekton.run.status"] == "succeeded"
    assert root.start_time <= spans["stage plan"].start_time
    for name in ("stage plan", "stage research"):
        stage = spans[name]
        assert stage.context.trace_id == trace_id
        assert stage.parent.span_id == span_id
        assert stage.attributes["tekton.stage.outcome"] == "succeeded"
        assert stage.attributes["tekton.run.name"] == run.name
        assert [link.context.span_id for link in stage.links] == [task.get_span_context().span_id]


def test_a_failed_run_span_says_so(
    traced, git_repo, fake_engine, django_capture_on_commit_callbacks
):
    fake_engine.behaviour = {"plan": RuntimeError("boom")}
    run = RunFactory(repo_path=str(git_repo), stage_from="plan", stage_to="plan")
    with django_capture_on_commit_callbacks(execute=True):
        run_inline(run.pk)
    spans = traced.get_finished_spans()
    root = next(s for s in spans if s.name.startswith("run "))
    assert root.status.status_code.name == "ERROR"
    failed_stages = [s for s in spans if s.name == "stage plan"]
    assert len(failed_stages) == 3  # three attempts, three spans
    assert all(s.attributes["error.type"] == "RuntimeError" for s in failed_stages)


def test_the_run_span_ids_are_the_same_everywhere():
    run = RunFactory()
    assert run_span_ids(run) == run_span_ids(Run.objects.get(pk=run.pk))
    assert run_span_ids(run)[0] == run.uid.int
