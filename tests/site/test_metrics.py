"""/metrics: off without a token, Bearer-protected, with Django's request metrics and
Tekton's own (counted where stages and calls are recorded, read from the database at
scrape time)."""

from __future__ import annotations

import re

import httpx
import pytest
from django.utils import timezone

from runs.dispatch import run_inline
from runs.models import Run, StageRun
from swarm.events import LlmCallDone
from tests.factories import RunFactory
from tests.runs.fake_engine import FakeEngine

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def scrape(client, settings):
    settings.TEKTON_METRICS_TOKEN = TOKEN

    def get() -> str:
        answer = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert answer.status_code == 200
        return answer.content.decode()

    return get


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels}` (labels in any order; others allowed), 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if line.split("{")[0].split(" ")[0] == name and all(
            found.get(k) == v for k, v in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_are_off_without_a_token_and_need_it(client, settings):
    settings.TEKTON_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.TEKTON_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_requests_and_runs_by_status_and_blocked_waits(scrape, client):
    RunFactory(status=Run.Status.QUEUED)
    blocked = RunFactory(status=Run.Status.BLOCKED)
    StageRun.objects.filter(run=blocked, stage="plan").update(
        status=StageRun.Status.BLOCKED, finished_at=timezone.now() - timezone.timedelta(minutes=5)
    )
    client.get("/accounts/login/")
    text = scrape()
    assert (
        value(text, "django_http_requests_total_by_view_transport_method_total", view="login") >= 1
    )
    assert value(text, "tekton_runs", status="queued") == 1
    assert value(text, "tekton_runs", status="blocked") == 1
    assert value(text, "tekton_runs", status="succeeded") == 0
    assert value(text, "tekton_stages_blocked") == 1
    assert 299 <= value(text, "tekton_stages_blocked_oldest_seconds") < 400
    assert value(text, "tekton_event_stream_subscribers") == 0


def test_stage_outcomes_and_llm_calls_are_counted_where_recorded(
    scrape, git_repo, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("runs.engine_bridge.stage_run", FakeEngine({"research": "block"}))
    before = scrape()
    run = RunFactory(repo_path=str(git_repo), stage_from="plan", stage_to="research")
    with django_capture_on_commit_callbacks(execute=True):
        run_inline(run.pk)
    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tekton_stages_finished_total", stage="plan", outcome="succeeded") == 1
    assert delta("tekton_stages_finished_total", stage="research", outcome="blocked") == 1
    assert delta("tekton_stage_duration_seconds_count", stage="plan", outcome="succeeded") == 1
    model = "openai/gpt-4o"
    assert delta("tekton_llm_calls_total", provider="fake", outcome="ok") == 2
    assert delta("tekton_llm_tokens_total", provider="fake", direction="input") == 200
    assert delta("tekton_llm_tokens_total", provider="fake", direction="output") == 40
    assert delta("tekton_llm_cost_usd_total", provider="fake") == pytest.approx(0.003)
    assert delta("tekton_llm_call_duration_seconds_count", provider="fake") == 2
    assert model  # the model label is whatever the profile names


def test_provider_errors_are_counted_by_kind():
    from runs.metrics import PROVIDER_ERRORS, llm_calls_observe

    def count():
        return PROVIDER_ERRORS.labels("anthropic", "ProviderTimeout")._value.get()

    before = count()
    llm_calls_observe(
        [
            LlmCallDone(
                stage="plan", role="skeptic", round=1, provider="anthropic", model="claude",
                input_tokens=0, output_tokens=0, cost_usd=0.0, latency_s=120.0, attempts=4,
                error="ProviderTimeout: no answer within 120 s",
            )
        ]
    )  # fmt: skip
    assert count() - before == 1


def test_a_process_serves_its_metrics_on_a_bound_port(settings):
    from tekton_site.metrics import exporter_start
    from tests.streams.live import free_port

    settings.TEKTON_METRICS_PORT = free_port()
    server = exporter_start(with_database=True)
    try:
        text = httpx.get(f"http://127.0.0.1:{settings.TEKTON_METRICS_PORT}/metrics").text
        assert "tekton_llm_calls_total" in text or "# HELP tekton_llm_calls_total" in text
        assert "tekton_runs{" in text
    finally:
        server.shutdown()
        server.server_close()
    settings.TEKTON_METRICS_PORT = 0
    assert exporter_start(with_database=False) is None


def test_the_example_dashboard_asks_only_for_metrics_that_exist(scrape, client, monkeypatch):
    import json
    from pathlib import Path

    monkeypatch.setattr("runs.metrics.queue_depth", lambda: 3)  # celery mode only
    client.get("/accounts/login/")
    dashboard = json.loads(
        (Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text()
    )
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    names = {n for e in exprs for n in re.findall(r"\b((?:tekton|django)_\w+)", e)}
    text = scrape()
    exposed = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    helped = {line.split(" ")[2] for line in text.splitlines() if line.startswith("# HELP")}
    missing = [n for n in names if n not in exposed and n not in helped]
    assert missing == []
