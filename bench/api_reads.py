"""Issue 3, section 5: read API latency and SQL queries per request as the data grows.

    uv run python -m bench.api_reads [--runs 100000] [--events 10000] [--requests 50] [--no-write]

Services mode (a throwaway PostgreSQL database). A child process sets up Django on it,
bulk-creates runs (with their nine stages for the run shown) and events, and times
in-process requests through Django's test client with a Bearer token:
`GET /api/runs/` (first page) at a small and at the full number of runs, and
`GET /api/runs/{id}/` at a few and at the full number of events, counting the SQL queries
of each request with CaptureQueriesContext: the count must not grow with the data.
Targets: /api/runs/ p95 <= 50 ms at 100,000 runs, /api/runs/{id}/ p95 <= 100 ms at
10,000 events.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import doc_section_write, machine, percentile
from tests.integration.harness import (
    PROJECT_DIR,
    Services,
)

BATCH = 5000


def _child(args) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.services import token_create
    from runs.models import Run, RunEvent, StageRun
    from swarm.stages import STAGE_NAMES

    owner = get_user_model().objects.create_user(username="bench-reads")
    token = token_create(user=owner, name="bench")[1]
    client = Client(headers={"authorization": f"Bearer {token}"})

    def add_runs(total: int) -> None:
        have = Run.objects.count()
        while have < total:
            n = min(BATCH, total - have)
            Run.objects.bulk_create(
                Run(
                    goal=f"bench goal {have + i}",
                    repo_path="/tmp/bench",
                    profile_name="diamond-v5",
                    stage_from="plan",
                    stage_to="release",
                    status="succeeded",
                    owner=owner,
                )
                for i in range(n)
            )
            have += n
        with connection.cursor() as cur:
            cur.execute("ANALYZE")

    def add_events(run: Run, total: int) -> None:
        have = RunEvent.objects.filter(run=run).count()
        while have < total:
            n = min(BATCH, total - have)
            RunEvent.objects.bulk_create(
                RunEvent(
                    run=run,
                    seq=have + i + 1,
                    kind="stage.progress",
                    stage="plan",
                    payload={"role": "proponent", "text": "x" * 200},
                )
                for i in range(n)
            )
            have += n
        Run.objects.filter(pk=run.pk).update(event_seq=total)
        with connection.cursor() as cur:
            cur.execute("ANALYZE")

    def measure(url: str) -> dict:
        client.get(url)  # warm-up
        times, queries, status = [], [], None
        for _ in range(args.requests):
            with CaptureQueriesContext(connection) as ctx:
                t0 = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
            status = response.status_code
            queries.append(len(ctx.captured_queries))
        return {
            "url": url,
            "status": status,
            "p50_ms": percentile(times, 50),
            "p95_ms": percentile(times, 95),
            "queries": sorted(set(queries)),
        }

    out = []
    shown = Run.objects.create(
        goal="the run shown",
        repo_path="/tmp/bench",
        profile_name="diamond-v5",
        stage_from="plan",
        stage_to="release",
        status="running",
        owner=owner,
    )
    StageRun.objects.bulk_create(
        StageRun(run=shown, stage=name, position=i + 1) for i, name in enumerate(STAGE_NAMES)
    )
    for runs in sorted({min(1000, args.runs), args.runs}):
        add_runs(runs)
        out.append({"what": "list", "rows": Run.objects.count(), **measure("/api/runs/")})
    for events in sorted({min(100, args.events), args.events}):
        add_events(shown, events)
        out.append({"what": "detail", "rows": events, **measure(f"/api/runs/{shown.pk}/")})
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return

    work = Path(tempfile.mkdtemp(prefix="tekton-bench-reads-"))
    services = Services.create(
        work_dir=work,
        extra_env={"TEKTON_LOG_LEVEL": "WARNING", "TEKTON_ALLOWED_HOSTS": "testserver,localhost"},
    )
    try:
        services.migrate()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.api_reads",
                "--child",
                "--runs",
                str(args.runs),
                "--events",
                str(args.events),
                "--requests",
                str(args.requests),
            ],
            cwd=PROJECT_DIR,
            env=services.env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"api_reads child failed:\n{proc.stderr[-4000:]}")
        rows = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        services.close()

    for r in rows:
        print(
            f"GET {r['url']:<22} {r['rows']:>7} {'runs' if r['what'] == 'list' else 'events'}: "
            f"status {r['status']}, p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
            f"SQL queries/request {r['queries']}"
        )
    if args.no_write:
        return
    lines = [
        "## Read API at scale (issue 3, section 5)",
        "",
        f"`uv run python -m bench.api_reads --runs {args.runs} --events {args.events} "
        f"--requests {args.requests}` on {machine()}; PostgreSQL, in-process requests "
        "(Django test client, Bearer token, first page of the list). Targets: `GET /api/runs/` "
        "p95 <= 50 ms at 100,000 runs, `GET /api/runs/{id}/` p95 <= 100 ms at 10,000 events; "
        "queries per request must not grow with the data.",
        "",
        "| request | rows | status | p50 ms | p95 ms | SQL queries |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        what = "runs" if r["what"] == "list" else "events"
        lines.append(
            f"| `GET {r['url']}` | {r['rows']:,} {what} | {r['status']} | {r['p50_ms']:.1f} | "
            f"{r['p95_ms']:.1f} | {', '.join(map(str, r['queries']))} |"
        )
    doc_section_write("api_reads", "\n".join(lines))


if __name__ == "__main__":
    main()
