"""Issue 4, section 5: dashboard server time at scale and commit-to-browser latency.

    uv run python -m bench.pages [--runs 10000] [--events 10000] [--requests 30]
                                 [--live-events 40] [--skip-postgres] [--skip-live] [--no-write]

1. Server time. A child process sets up Django on a throwaway database (SQLite in a temp
   data dir, and PostgreSQL when it is reachable), bulk-creates runs (each with its nine
   stages) and the events of one run, and times in-process requests with Django's test
   client (a logged-in session): `GET /` (the runs page, first keyset page) at `--small`
   and at `--runs` runs, and `GET /runs/<id>/` at `--small` and at `--events` events. The
   SQL queries of each request are counted with CaptureQueriesContext: the count must not
   grow with the data. Targets: `/` p95 <= 100 ms at 10,000 runs, `/runs/<id>/` p95 <=
   150 ms at 10,000 events.
2. Commit to browser. Services mode (PostgreSQL, the Redis channel layer) with one ASGI
   server (Daphne's `runserver --insecure`, which also serves the static files). Headless
   Chromium (Playwright) logs in and opens a running run's page; once its WebSocket is
   live, a MutationObserver records the wall time (performance.timeOrigin +
   performance.now()) at which the plan stage's row in the timeline shows each new message
   count. A separate emitter process records `stage.progress` events of that stage with
   `runs.events.event_record` and notes time.time() in an on_commit callback registered
   before the event's own (so it runs right after the commit, before the publish). Both
   clocks are the machine's wall clock. Latency = row changed - committed, p50/p95 over
   `--live-events` events. Target p95 <= 100 ms.

Figures are printed (and written to docs/benchmarks.md), never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from bench.common import EmbeddedEnv, doc_section_write, machine, percentile
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, USERNAME, login
from tests.integration.harness import (
    PROJECT_DIR,
    Services,
    ServiceUnavailable,
    manage,
)
from tests.streams.live import free_port

BATCH = 2000
LIVE_STAGE = "plan"
HOSTS = "testserver,localhost,127.0.0.1"


# --- 1. server time (child process, Django set up from the environment) ------------------


def _payload(i: int, role: str) -> dict:
    """A `stage.progress` payload shaped like an agent message of a real run."""
    return {
        "role": role,
        "model": "offline/bench",
        "attempt": 1,
        "round": (i // 3) % 3,
        "answer": {
            "position": f"message {i}: " + "the plan holds if the migration runs first. " * 6,
            "self_confidence": 0.8,
            "vote": {"approve": True, "reason": "fits the goal"},
            "risks": ["a slow migration"],
        },
    }


def _child(args) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from runs.models import Run, RunEvent, StageRun
    from swarm.stages import STAGE_NAMES

    owner = get_user_model().objects.create_user(username=USERNAME)
    client = Client()
    client.force_login(owner)
    config = {"quorum": 0.67, "threshold": 0.7}
    roles = ("proponent", "skeptic", "pragmatist")

    def stages_of(run_ids: list[int], finished: bool) -> list[StageRun]:
        rows = []
        for run_id in run_ids:
            for pos, name in enumerate(STAGE_NAMES, start=1):
                done = finished or pos < 4
                rows.append(
                    StageRun(
                        run_id=run_id,
                        stage=name,
                        position=pos,
                        status="succeeded" if done else ("running" if pos == 4 else "queued"),
                        attempt=1 if pos <= 4 or finished else 0,
                        confidence=0.82 if done else None,
                        approval=1.0 if done else None,
                        input_tokens=1200 if done else 0,
                        output_tokens=800 if done else 0,
                    )
                )
        return rows

    def add_runs(total: int) -> None:
        have = Run.objects.count()
        while have < total:
            n = min(BATCH, total - have)
            created = Run.objects.bulk_create(
                Run(
                    goal=f"bench goal {have + i}: add a health check endpoint",
                    repo_path="/tmp/bench/shop",
                    profile_name="diamond-v5",
                    config=config,
                    stage_from="plan",
                    stage_to="release",
                    status="succeeded",
                    owner=owner,
                    input_tokens=10800,
                    output_tokens=7200,
                )
                for i in range(n)
            )
            StageRun.objects.bulk_create(stages_of([r.pk for r in created], True))
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
                    # Spread over the nine stages, so the panel of the running stage
                    # shows a ninth of them.
                    stage=STAGE_NAMES[(have + i) % len(STAGE_NAMES)],
                    payload=_payload(have + i, roles[(have + i) % 3]),
                )
                for i in range(n)
            )
            have += n
        Run.objects.filter(pk=run.pk).update(event_seq=total)
        with connection.cursor() as cur:
            cur.execute("ANALYZE")

    def measure(url: str) -> dict:
        client.get(url)  # warm-up: templates compiled, connection open
        times, queries, sql, status, size = [], [], [], None, 0
        for _ in range(args.requests):
            with CaptureQueriesContext(connection) as ctx:
                t0 = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
            status, size = response.status_code, len(response.content)
            queries.append(len(ctx.captured_queries))
            sql.append(sum(float(q["time"]) for q in ctx.captured_queries) * 1000)
        return {
            "url": url,
            "status": status,
            "bytes": size,
            "p50_ms": percentile(times, 50),
            "p95_ms": percentile(times, 95),
            "queries": sorted(set(queries)),
            "sql_p50_ms": percentile(sql, 50),
        }

    shown = Run.objects.create(
        goal="the run shown",
        repo_path="/tmp/bench/shop",
        profile_name="diamond-v5",
        config=config,
        stage_from="plan",
        stage_to="release",
        status="running",
        owner=owner,
    )
    StageRun.objects.bulk_create(stages_of([shown.pk], False))
    out = []
    for runs in sorted({min(args.small, args.runs), args.runs}):
        add_runs(runs)
        out.append({"what": "runs", "rows": Run.objects.count(), **measure("/")})
    for events in sorted({min(args.small, args.events), args.events}):
        add_events(shown, events)
        shown_messages = RunEvent.objects.filter(run=shown, stage=STAGE_NAMES[3]).count()
        row = measure(f"/runs/{shown.pk}/")
        out.append({"what": "events", "rows": events, "panel": shown_messages, **row})
    print(json.dumps({"vendor": connection.vendor, "rows": out}))


def _server_time(env: dict[str, str], args) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.pages",
            "--child",
            "--runs",
            str(args.runs),
            "--events",
            str(args.events),
            "--small",
            str(args.small),
            "--requests",
            str(args.requests),
        ],
        cwd=PROJECT_DIR,
        env={**env, "TEKTON_ALLOWED_HOSTS": HOSTS, "TEKTON_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench.pages child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _services(work: Path) -> Services:
    return Services.create(
        work_dir=work,
        extra_env={"TEKTON_LOG_LEVEL": "WARNING", "TEKTON_ALLOWED_HOSTS": HOSTS},
    )


# --- 2. commit to browser ---------------------------------------------------------------

_SETUP = """
from django.contrib.auth import get_user_model
from runs.models import Run, StageRun
from swarm.stages import STAGE_NAMES
owner, _ = get_user_model().objects.get_or_create(username={username!r})
owner.set_password({password!r})
owner.save()
run = Run.objects.create(goal="live timeline benchmark", repo_path="/tmp/bench/shop",
    profile_name="diamond-v5", config={{"quorum": 0.67, "threshold": 0.7}},
    stage_from="plan", stage_to="release", status="running", owner=owner)
StageRun.objects.bulk_create(
    StageRun(run=run, stage=name, position=i + 1,
             status="running" if name == {stage!r} else "queued",
             attempt=1 if name == {stage!r} else 0)
    for i, name in enumerate(STAGE_NAMES))
print(run.pk)
"""

# Runs in the page: remembers when the stage row first shows each new message count.
_OBSERVER = """(stage) => {
  window.__bench = [];
  const read = () => {
    const row = document.getElementById("stage-row-" + stage);
    const m = row ? /(\\d+) messages?/.exec(row.textContent) : null;
    return m ? parseInt(m[1], 10) : 0;
  };
  let last = read();
  const target = document.getElementById("run-live");
  new MutationObserver(() => {
    const count = read();
    if (count > last) {
      const rec = {count: count, dom: performance.timeOrigin + performance.now(), frame: null};
      window.__bench.push(rec);
      // The first animation frame after the change: when it can be painted.
      requestAnimationFrame(() => { rec.frame = performance.timeOrigin + performance.now(); });
      last = count;
    }
  }).observe(target, {childList: true, subtree: true, characterData: true});
  return last;
}"""


def _emit(args) -> None:
    """The emitter process: records events of one run, printing their commit times."""
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.db import transaction

    from runs.events import event_record
    from runs.models import Run

    # The first query and the first publish open their connections; not the page's cost.
    Run.objects.filter(pk=args.run).exists()
    async_to_sync(get_channel_layer().group_send)("tekton.bench.warmup", {"type": "noop"})
    committed: list[float] = []
    for n in range(args.live_events):
        with transaction.atomic():
            # Registered before event_record's publish, so it runs first after the commit.
            transaction.on_commit(lambda: committed.append(time.time()))
            event_record(
                run_id=args.run,
                kind="stage.progress",
                stage=LIVE_STAGE,
                payload=_payload(n, "proponent"),
            )
        time.sleep(args.interval_ms / 1000)
    print(json.dumps({"committed": committed}))


def _live(args, services: Services, work: Path) -> dict:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium")
    # The browser tests' account (tests.browser.conftest.login signs in with it), here in a
    # throwaway database that is dropped when the script ends.
    env = services.env
    proc = manage(
        ["shell", "-c", _SETUP.format(username=USERNAME, password=PASSWORD, stage=LIVE_STAGE)],
        env=env,
        timeout=60,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"creating the run failed:\n{proc.stderr[-2000:]}")
    run_id = int(proc.stdout.strip().splitlines()[-1])

    port = free_port()
    log_path = work / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "runserver",
                "--noreload",
                "--insecure",
                f"127.0.0.1:{port}",
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base, server, log_path)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            login(page, SimpleNamespace(base_url=base))
            page.goto(f"{base}/runs/{run_id}/")
            page.wait_for_selector("#run-live[data-conn='live']")
            start_count = page.evaluate(_OBSERVER, LIVE_STAGE)
            clock = page.evaluate("() => [performance.timeOrigin + performance.now(), Date.now()]")
            emit = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.pages",
                    "--emit",
                    "--run",
                    str(run_id),
                    "--live-events",
                    str(args.live_events + 1),
                    "--interval-ms",
                    str(args.interval_ms),
                ],
                cwd=PROJECT_DIR,
                env=env,
                capture_output=True,
                text=True,
                timeout=args.live_events * (args.interval_ms / 1000 + 1) + 120,
            )
            if emit.returncode != 0:
                raise RuntimeError(f"the emitter failed:\n{emit.stderr[-3000:]}")
            committed = json.loads(emit.stdout.strip().splitlines()[-1])["committed"]
            total = start_count + len(committed)
            seen: list[dict] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                seen = page.evaluate("() => window.__bench")
                if seen and seen[-1]["count"] >= total and seen[-1]["frame"] is not None:
                    break
                time.sleep(0.1)
            browser.close()
    finally:
        _stop(server)

    dom, frame, missing = [], [], 0
    # Event k (1-based) is visible from the first change showing a count >= start + k;
    # a message that coalesced several events counts for each of them. The first event
    # warms up the run's feed in the server and is not counted.
    for k, t_commit in enumerate(committed, start=1):
        rec = next((r for r in seen if r["count"] >= start_count + k), None)
        if k == 1:
            continue
        if rec is None:
            missing += 1
            continue
        dom.append(rec["dom"] - t_commit * 1000)
        if rec["frame"] is not None:
            frame.append(rec["frame"] - t_commit * 1000)
    return {
        "events": len(committed) - 1,
        "changes": len(seen),
        "missing": missing,
        "dom_p50_ms": percentile(dom, 50),
        "dom_p95_ms": percentile(dom, 95),
        "dom_max_ms": max(dom) if dom else float("nan"),
        "frame_p50_ms": percentile(frame, 50),
        "frame_p95_ms": percentile(frame, 95),
        "clock_skew_ms": clock[0] - clock[1],
    }


def _wait_http(base: str, server: subprocess.Popen, log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not start:\n{log_path.read_text()[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    import signal

    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


# --- orchestration ------------------------------------------------------------------------


def _print_rows(label: str, result: dict) -> None:
    for r in result["rows"]:
        extra = f" (panel: {r['panel']:,} messages)" if r["what"] == "events" else ""
        print(
            f"[{label}] GET {r['url']:<12} {r['rows']:>6,} {r['what']}{extra}: status "
            f"{r['status']}, p50 {r['p50_ms']:.1f} ms (SQL {r['sql_p50_ms']:.1f}), "
            f"p95 {r['p95_ms']:.1f} ms, "
            f"{r['bytes'] / 1024:.0f} KiB, SQL queries/request {r['queries']}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=100, help="the small size compared")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--live-events", type=int, default=40)
    parser.add_argument("--interval-ms", type=float, default=200)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--emit", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    if args.emit:
        _emit(args)
        return

    server_rows: list[tuple[str, dict]] = []
    notes: list[str] = []
    load_before = os.getloadavg()[0]
    embedded = EmbeddedEnv.create(latency_ms=0)
    try:
        result = _server_time(embedded.env, args)
        _print_rows("SQLite", result)
        server_rows.append(("SQLite", result))
    finally:
        shutil.rmtree(embedded.root, ignore_errors=True)

    live = None
    if not (args.skip_postgres and args.skip_live):
        work = Path(tempfile.mkdtemp(prefix="tekton-bench-pages-"))
        try:
            services = _services(work)
        except ServiceUnavailable as exc:
            services = None
            notes.append(f"PostgreSQL / Redis not measured: {exc}")
            print(notes[-1], flush=True)
        if services is not None:
            try:
                services.migrate()
                if not args.skip_postgres:
                    result = _server_time(services.env, args)
                    _print_rows("PostgreSQL", result)
                    server_rows.append(("PostgreSQL", result))
                if not args.skip_live:
                    live = _live(args, services, work)
                    print(
                        f"commit -> timeline row changed ({live['events']} events "
                        f"{args.interval_ms:g} ms apart): p50 {live['dom_p50_ms']:.1f} ms, "
                        f"p95 {live['dom_p95_ms']:.1f} ms, max {live['dom_max_ms']:.1f} ms; "
                        f"next animation frame p50 {live['frame_p50_ms']:.1f} ms, "
                        f"p95 {live['frame_p95_ms']:.1f} ms; missing {live['missing']}, "
                        f"DOM changes {live['changes']}",
                        flush=True,
                    )
            finally:
                services.close()
                shutil.rmtree(work, ignore_errors=True)
    # The machine may be shared with other work; the figures are only as quiet as it was.
    notes.append(
        f"1-minute load average {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at "
        "the end."
    )
    print(notes[-1])
    if args.no_write:
        return
    _write(args, server_rows, live, notes)


def _write(args, server_rows: list[tuple[str, dict]], live: dict | None, notes: list[str]):
    command = (
        f"uv run python -m bench.pages --runs {args.runs} --events {args.events} "
        f"--requests {args.requests} --live-events {args.live_events} "
        f"--interval-ms {args.interval_ms:g}"
    )
    lines = [
        "## Dashboard pages at scale and live timeline latency (issue 4, section 5)",
        "",
        f"`{command}` on {machine()}.",
        "",
        "**Server time**: in-process requests through Django's test client with a logged-in "
        "session, on databases filled with bulk_create (every run with its nine stages; the "
        "run shown has its events spread over the nine stages as agent messages, and its "
        "page opens on the running stage, whose transcript shows a ninth of them). "
        f"{args.requests} timed requests after one warm-up. Targets: `/` p95 <= 100 ms at "
        "10,000 runs, `/runs/<id>/` p95 <= 150 ms at 10,000 events; the SQL queries per "
        "request must not grow with the data. SQL ms: the time inside the database "
        "calls of a request as Django's query log records it (to the millisecond); the rest "
        "is Python: views and template rendering.",
        "",
        "| database | request | rows | status | p50 ms | p95 ms | SQL ms (p50) | size "
        "| SQL queries |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, result in server_rows:
        for r in result["rows"]:
            rows = f"{r['rows']:,} {r['what']}"
            if r["what"] == "events":
                rows += f" ({r['panel']:,} in the panel)"
            url = "/runs/<id>/" if r["what"] == "events" else r["url"]
            lines.append(
                f"| {label} | `GET {url}` | {rows} | {r['status']} | {r['p50_ms']:.1f} | "
                f"{r['p95_ms']:.1f} | {r['sql_p50_ms']:.1f} | {r['bytes'] / 1024:.0f} KiB | "
                f"{', '.join(map(str, r['queries']))} |"
            )
    if live is not None:
        lines += [
            "",
            "**Commit to browser**: services mode (PostgreSQL, Redis channel layer), one "
            "Daphne `runserver` process; headless Chromium (Playwright) on the run page of a "
            "running run. An emitter process records `stage.progress` events of the running "
            f"stage with `event_record`, {args.interval_ms:g} ms apart; the commit time is "
            "time.time() in an on_commit callback that runs right after the commit, before the "
            "publish; the browser time is when a MutationObserver saw the stage's row show the "
            "new message count (and the next animation frame after it), "
            "performance.timeOrigin + performance.now(), the same wall clock. The first event "
            "(it warms the server's feed of the run) is not counted. Target p95 <= 100 ms.",
            "",
            "| figure | p50 ms | p95 ms | max ms |",
            "|---|---:|---:|---:|",
            f"| commit -> timeline row changed in the DOM | {live['dom_p50_ms']:.1f} | "
            f"{live['dom_p95_ms']:.1f} | {live['dom_max_ms']:.1f} |",
            f"| commit -> next animation frame | {live['frame_p50_ms']:.1f} | "
            f"{live['frame_p95_ms']:.1f} | |",
            "",
            f"{live['events']} events measured, {live['missing']} never shown; the row changed "
            f"{live['changes']} times (fewer than the events when the consumer coalesced "
            "several into one message). Browser clock check: performance.timeOrigin + "
            f"performance.now() - Date.now() = {live['clock_skew_ms']:.1f} ms.",
        ]
    if notes:
        lines += ["", *notes]
    doc_section_write("pages", "\n".join(lines))


if __name__ == "__main__":
    main()
