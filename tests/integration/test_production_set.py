"""The production-like process set, for real: uvicorn as docs/deploy runs it (not runserver)
serving the pages with their collected static files and a run's streams, two Celery
worker processes, artifacts in an S3-compatible
server (moto, on loopback) written by a worker and downloaded through the web process,
spans received by an OTLP receiver on loopback, /metrics scraped from the web process and
from each worker's own exporter. One process set for the whole module."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
import websockets

from tests.conftest import S3_ENV
from tests.integration.harness import PROJECT_DIR, Services, Worker, make_git_repo, wait_for
from tests.integration.otlp import OtlpReceiver
from tests.streams.live import UVICORN_FLAGS, AsgiServer, free_port, user_token

METRICS_TOKEN = "production-set-metrics-token"


@dataclass
class ProcessSet:
    web: AsgiServer
    workers: list[Worker]
    worker_metrics: list[int]
    services: Services
    env: dict[str, str]
    bucket: str
    s3: object
    otlp: OtlpReceiver
    token: str
    repo: Path


@pytest.fixture(scope="module")
def prod(services: Services, s3_server: str, tmp_path_factory) -> Iterator[ProcessSet]:
    work = tmp_path_factory.mktemp("prod")
    bucket = f"tekton-prod-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket=bucket)
    otlp = OtlpReceiver().start()
    env = {
        **services.env,
        **S3_ENV,
        "TEKTON_ARTIFACT_STORAGE": "s3",
        "TEKTON_S3_BUCKET": bucket,
        "TEKTON_S3_ENDPOINT_URL": s3_server,
        "TEKTON_METRICS_TOKEN": METRICS_TOKEN,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "TEKTON_OFFLINE_LATENCY_MS": "5",
    }
    web = AsgiServer(env=env, log_path=work / "web.log", server="uvicorn")
    ports = [free_port(), free_port()]
    workers = []
    try:
        for i, port in enumerate(ports):
            workers.append(
                Worker(
                    env=env,
                    queue=services.queue,
                    log_path=work / f"worker-{i + 1}.log",
                    extra_env={"TEKTON_METRICS_PORT": str(port)},
                )
            )
        web.wait_ready()
        for worker in workers:
            worker.wait_ready()
        token = user_token(env, f"prod-{uuid.uuid4().hex[:6]}")
        repo = make_git_repo(services.repo_root / f"prod-{uuid.uuid4().hex[:6]}")
        yield ProcessSet(web, workers, ports, services, env, bucket, s3, otlp, token, repo)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.stop()
        web.stop()
        otlp.stop()


@pytest.fixture(scope="module")
def finished_run(prod: ProcessSet) -> dict:
    headers = {"Authorization": f"Bearer {prod.token}"}
    created = httpx.post(
        prod.web.base_url + "/api/runs/",
        json={"goal": "Add a /version endpoint", "repo": str(prod.repo), "to": "code"},
        headers=headers,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]

    def done():
        run = httpx.get(f"{prod.web.base_url}/api/runs/{run_id}/", headers=headers).json()
        return run if run["status"] not in ("queued", "running") else None

    run = wait_for(done, timeout=120, interval=0.3, what=f"run {run_id} to finish")
    assert run["status"] == "succeeded", run
    return run


def test_the_web_process_serves_the_pages_with_their_static_files(prod: ProcessSet):
    base = prod.web.base_url
    page = httpx.get(base + "/accounts/login/").text
    assets = re.findall(r'(?:href|src)="(/static/[^"]+\.[0-9a-f]{12}\.(?:css|js))"', page)
    assert any(a.endswith(".css") for a in assets) and any(a.endswith(".js") for a in assets)
    for asset in assets:
        answer = httpx.get(base + asset, headers={"Accept-Encoding": "br, gzip"})
        assert answer.status_code == 200, asset
        assert "immutable" in answer.headers["cache-control"]
        assert answer.headers.get("content-encoding") in ("br", "gzip")
    ready = httpx.get(base + "/readyz").json()
    assert ready == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
    # A load balancer probes by address: answered even with tracing's middleware in front.
    assert httpx.get(base + "/readyz", headers={"Host": "10.0.0.5:8000"}).status_code == 200
    assert httpx.get(base + "/accounts/login/", headers={"Host": "10.0.0.5"}).status_code == 400


def test_a_workers_artifacts_are_in_s3_and_downloaded_through_the_web(prod, finished_run):
    headers = {"Authorization": f"Bearer {prod.token}"}
    run_id = finished_run["id"]
    stages = prod.services.query(
        "SELECT stage, worker FROM runs_stagerun WHERE run_id = %s", (run_id,)
    )
    names = {w.name for w in prod.workers}
    assert all(s["worker"].split("@")[0] in names for s in stages), stages
    rows = prod.services.query(
        "SELECT name, path, sha256 FROM runs_artifact WHERE run_id = %s", (run_id,)
    )
    assert {"plan.json", "code.json", "diff.patch", "diamond_summary.json"} <= {
        r["name"] for r in rows
    }
    for row in rows:
        stored = prod.s3.get_object(Bucket=prod.bucket, Key=row["path"])["Body"].read()
        answer = httpx.get(
            f"{prod.web.base_url}/api/runs/{run_id}/artifacts/{row['name']}", headers=headers
        )
        assert answer.status_code == 200
        assert answer.content == stored, row["name"]
    # Nothing went to a local artifact folder: the bucket is the only copy.
    uid = prod.services.query("SELECT uid FROM runs_run WHERE id = %s", (run_id,))[0]["uid"]
    folder = f"run-{run_id}-{uuid.UUID(str(uid)).hex[:8]}"
    assert not list((prod.services.data_dir / "artifacts").rglob(folder))
    assert any(row["path"].split("/")[1] == folder for row in rows)


def test_spans_arrive_linked_from_the_web_request_to_the_workers(prod, finished_run):
    row = prod.services.query(
        "SELECT uid, namespace FROM runs_run WHERE id = %s", (finished_run["id"],)
    )[0]
    run_uid = uuid.UUID(str(row["uid"]))

    def run_span():
        return next((s for s in prod.otlp.snapshot() if s.name.startswith("run ")
                     and s.attributes.get("tekton.run.id") == finished_run["id"]), None)  # fmt: skip

    root = wait_for(run_span, timeout=30, what="the run's span")
    assert root.trace_id == run_uid.int
    assert root.name == f"run {row['namespace']}/run-{finished_run['id']}-{run_uid.hex[:8]}"
    spans = [s for s in prod.otlp.snapshot() if s.trace_id == root.trace_id]
    stages = [s for s in spans if s.name.startswith("stage ")]
    assert {s.name for s in stages} == {
        "stage plan",
        "stage research",
        "stage plan_update",
        "stage code",
    }
    assert all(s.parent_span_id == root.span_id and s.service == "tekton-worker" for s in stages)
    by_id = {s.span_id: s for s in prod.otlp.snapshot()}
    # The first stage links to its Celery task, which continues the web request's trace.
    plan = next(s for s in stages if s.name == "stage plan")
    task = by_id[plan.links[0][1]]
    assert task.service == "tekton-worker" and "stage_execute_task" in task.name
    publish = by_id[task.parent_span_id]
    request = by_id[publish.parent_span_id]
    assert publish.service == request.service == "tekton-web"
    assert (
        request.attributes.get("http.request.method", request.attributes.get("http.method"))
        == "POST"
    )
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert chats and all(c.attributes["gen_ai.provider.name"] == "offline" for c in chats)
    assert all(c.attributes["gen_ai.usage.output_tokens"] > 0 for c in chats)
    turns = {s.span_id for s in spans if s.name.startswith("invoke_agent ")}
    assert all(c.parent_span_id in turns for c in chats)
    assert all("gen_ai.input.messages" not in s.attributes for s in spans)


def test_metrics_are_scraped_from_the_web_process_and_each_worker(prod, finished_run):
    base = prod.web.base_url
    assert httpx.get(base + "/metrics").status_code == 401
    text = httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert re.search(r'^tekton_runs\{status="succeeded"\} [1-9]', text, re.M)
    assert re.search(r'^tekton_celery_queue_messages\{queue="[^"]+"\} \d', text, re.M)
    assert "django_http_requests_total_by_view_transport_method_total" in text
    calls = 0.0
    for port in prod.worker_metrics:
        worker_text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "tekton_runs{" not in worker_text  # database gauges come from the web only
        calls += sum(
            float(m) for m in re.findall(
                r'^tekton_llm_calls_total\{[^}]*provider="offline"[^}]*\} (\S+)', worker_text, re.M
            )
        )  # fmt: skip
    assert calls >= 4 * 7  # four stages, seven calls each, counted by the workers


def test_the_web_process_streams_a_run_over_sse_and_an_uncompressed_websocket(prod, finished_run):
    run_id = finished_run["id"]
    headers = {"Authorization": f"Bearer {prod.token}", "Accept": "text/event-stream"}
    with httpx.stream(
        "GET", f"{prod.web.base_url}/api/runs/{run_id}/events", headers=headers, timeout=30
    ) as answer:
        assert answer.status_code == 200
        kinds = [ln.split(": ", 1)[1] for ln in answer.iter_lines() if ln.startswith("event: ")]
    assert kinds[0] == "run.started" and kinds[-1] == "run.finished"

    async def over_websocket() -> tuple[str | None, list[str]]:
        uri = f"{prod.web.ws_url}/ws/runs/{run_id}/?token={prod.token}"
        # The client offers per-message compression, as browsers do; the server declines.
        async with websockets.connect(uri, origin=prod.web.base_url) as ws:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            return extensions, [json.loads(text)["kind"] async for text in ws]

    extensions, ws_kinds = asyncio.run(over_websocket())
    assert extensions is None
    assert ws_kinds == kinds


@pytest.mark.parametrize("path", ["docs/deploy/Procfile", "docs/deploy/systemd/tekton-web.service"])
def test_the_deploy_files_run_the_web_process_this_module_tests(path):
    line = next(
        ln for ln in (PROJECT_DIR / path).read_text().splitlines()
        if ln.startswith(("web:", "ExecStart="))
    )  # fmt: skip
    assert "uvicorn" in line and line.endswith("tekton_site.asgi:application")
    assert " ".join(UVICORN_FLAGS) in line
