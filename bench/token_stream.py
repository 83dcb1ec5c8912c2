"""Issue 11, section 5: a streamed token's way from the provider to a subscriber.

    uv run python -m bench.token_stream [--runs 1,100] [--latency-ms 1000] [--server uvicorn]
                                        [--no-write]

Services mode: PostgreSQL, Redis (channels_redis), `--workers` real Celery worker
processes (threads pool) and ONE web process serving `tekton_site.asgi` (uvicorn as the
production web process runs it, or `--server daphne`). Each run is
the plan stage alone (a full debate: 3 debaters x 3 rounds + the mediator) on the offline
backend, which streams every answer in 12 pieces spread over `--latency-ms`; with
TEKTON_OFFLINE_STREAM_STAMPS=1 each piece starts with the wall time it left the provider
(`«t=1712345678.123456»`, in the streamed text only, never in the stored answer).

For each run count N, N runs are created (not dispatched); every run gets one subscriber
per transport (SSE `?deltas=1`, WebSocket `?deltas=1`, and the TUI's own client,
tui.stream.RunStream over SSE), spread over a few client processes; once all are
connected the runs are dispatched at once. A subscriber rebuilds each call's text from
the deltas (offset + text) and times every stamp when it is first complete: latency =
arrival - stamp, p50 and p95 over every (subscriber, stamp). The same N runs are then
repeated twice under Redis MONITOR, streaming on and with the run config "stream": false
(providers called without streaming, no deltas), for the comparison: channel-layer
messages per second (the layer's sends under this bench's prefix: one per group_send)
and database writes per run (pg_stat_database rows inserted + updated + deleted in this
bench's database, and the RunEvent / LlmCall rows). Targets: p95 <= 100 ms at 100 runs;
database writes unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import (
    METRICS_TOKEN,
    doc_section_write,
    machine,
    percentile,
    streams_live_wait,
)
from swarm.deltas import HOLD_CHARS
from swarm.redact import open_tail_start
from tests.integration.harness import PROJECT_DIR, Services, Worker, manage, wait_for
from tests.streams.live import SERVERS, AsgiServer, user_token

CLIENT_PROCESSES = 3
TRANSPORTS = ("sse", "ws", "tui")
# A blocked stage waits for a person: the bench's runs end there too (and are counted as
# not succeeded), or their subscribers would wait out the client's timeout.
FINAL_KINDS = ("run.finished", "run.failed", "run.cancelled", "stage.blocked")
STAMP = re.compile(r"\u00abt=(\d+\.\d+)\u00bb")
FINISHED = ("succeeded", "failed", "cancelled", "blocked")

_CREATE = """
import json
from django.contrib.auth import get_user_model
from django.db import transaction
from runs.services import run_create
user = get_user_model().objects.get(username={username!r})
ids = []
for i in range({n}):
    with transaction.atomic():
        run = run_create(goal="token stream benchmark #%d" % (i + 1), repo_path={repo!r},
                         stage_from="plan", stage_to="plan", by=user, dispatch=False)
        run.config = {{**run.config, "stream": {stream!r}}}
        run.save(update_fields=["config"])
    ids.append(run.pk)
print(json.dumps(ids))
"""

_DISPATCH = """
from runs.services import stages_dispatch, stages_ready
ready = []
for run_id in {ids!r}:
    ready += stages_ready(run_id=run_id)
stages_dispatch(ready)
"""


# --- what a subscriber does with the deltas ------------------------------------------------


class StampClock:
    """Rebuilds each call's streamed text from its deltas and times every stamp once, when
    it is first whole (a delta may end inside one). `split()` then tells, per stamp, how
    long the redaction hold kept it back and how long the way to the subscriber took."""

    def __init__(self, hold: int = HOLD_CHARS) -> None:
        self.hold = hold
        self.texts: dict[str, str] = {}
        self.arrivals: dict[str, dict[str, float]] = {}
        self.latencies: list[float] = []
        self.deltas = 0

    def feed(self, payload: dict, now: float) -> None:
        self.deltas += 1
        call = str(payload.get("call_id") or "")
        if payload.get("discard"):
            self.texts.pop(call, None)
            self.arrivals.pop(call, None)
            return
        text = self.texts.get(call, "")
        offset = int(payload.get("offset") or 0)
        text = text[:offset] + str(payload.get("text") or "")
        self.texts[call] = text
        seen = self.arrivals.setdefault(call, {})
        for match in STAMP.finditer(text):
            if match.group(1) not in seen:
                seen[match.group(1)] = now
                self.latencies.append(now - float(match.group(1)))

    def split(self) -> tuple[list[float], list[float]]:
        """(hold, path) seconds per stamp. A stamp can go out once the call's open tail
        (swarm.redact.open_tail_start, what could still become a secret) begins after it,
        or the call ends: its gate is the send time of the piece that took the text that
        far (the last piece's for the tail).
        hold = gate - stamp; path = arrival - gate (coalescing, layer, hub, transport)."""
        holds, paths = [], []
        for call, text in self.texts.items():
            stamps = list(STAMP.finditer(text))
            arrivals = self.arrivals.get(call, {})
            for k, match in enumerate(stamps):
                if match.group(1) not in arrivals:
                    continue
                gate = float(stamps[-1].group(1))
                for j in range(k, len(stamps)):
                    end = stamps[j + 1].start() if j + 1 < len(stamps) else len(text)
                    if open_tail_start(text[:end], self.hold) >= match.end():
                        gate = float(stamps[j].group(1))
                        break
                sent = float(match.group(1))
                holds.append(gate - sent)
                paths.append(arrivals[match.group(1)] - gate)
        return holds, paths


def _event(body: dict, clock: StampClock) -> bool:
    """Feed one event; True once the run's final event came."""
    now = time.time()
    kind = body.get("kind")
    if kind == "stage.delta":
        clock.feed(body.get("payload") or {}, now)
    return kind in FINAL_KINDS


async def _sse(base: str, token: str, run_id: int, ready: asyncio.Event, clock: StampClock):
    import httpx
    from httpx_sse import aconnect_sse

    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(600.0)) as client,
        aconnect_sse(
            client, "GET", f"/api/runs/{run_id}/events", params={"deltas": "1"}, headers=headers
        ) as source,
    ):
        ready.set()
        async for sse in source.aiter_sse():
            if sse.data and _event(json.loads(sse.data), clock):
                return


async def _ws(base: str, token: str, run_id: int, ready: asyncio.Event, clock: StampClock):
    import websockets

    uri = base.replace("http://", "ws://") + f"/ws/runs/{run_id}/?token={token}&deltas=1"
    async with websockets.connect(uri, origin=base, max_queue=None, open_timeout=120) as ws:
        ready.set()
        async for text in ws:
            if _event(json.loads(text), clock):
                return


async def _tui(base: str, token: str, run_id: int, ready: asyncio.Event, clock: StampClock):
    from tui.client import ApiClient
    from tui.stream import Event, RunStream, Status

    client = ApiClient(base, token)
    try:
        async for item in RunStream(client, run_id, deltas=True, stall_seconds=600):
            if isinstance(item, Status):
                if item.state == "live":
                    ready.set()
                elif item.state in ("ended", "error"):
                    return
            elif isinstance(item, Event) and item.kind == "stage.delta":
                clock.feed(item.payload, time.time())
            elif isinstance(item, Event) and item.kind in FINAL_KINDS:
                return
    finally:
        await client.aclose()


async def _client_main(args) -> None:
    runs = [int(x) for x in args.runs.split(",")]
    transports = args.transports.split(",")
    follow = {"sse": _sse, "ws": _ws, "tui": _tui}
    # One clock per subscriber: call ids ("plan.1.3") repeat from run to run.
    clocks: dict[str, list[StampClock]] = {t: [] for t in transports}
    readies, tasks = [], []
    for run_id in runs:
        for t in transports:
            ready, clock = asyncio.Event(), StampClock()
            readies.append(ready)
            clocks[t].append(clock)
            tasks.append(
                asyncio.create_task(follow[t](args.base, args.token, run_id, ready, clock))
            )
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 180)
    print("ready", flush=True)
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for task in pending:
        task.cancel()
    errors = [repr(t.exception()) for t in done if t.exception() is not None]
    print(
        json.dumps(
            {
                "latencies": {t: [x for c in cs for x in c.latencies] for t, cs in clocks.items()},
                "splits": {
                    t: [[x for c in cs for x in c.split()[i]] for i in (0, 1)]
                    for t, cs in clocks.items()
                },
                "deltas": {t: sum(c.deltas for c in cs) for t, cs in clocks.items()},
                "unfinished": len(pending),
                "errors": errors[:5],
            }
        ),
        flush=True,
    )


# --- the services side -----------------------------------------------------------------------


class LayerCounter:
    """Redis MONITOR in a thread: the channel layer's sends under `prefix` (one EVAL per
    group_send with the default layer, one PUBLISH with the pub/sub one), and how many of
    them carried deltas."""

    def __init__(self, redis_url: str, prefix: str, *, on: bool = True) -> None:
        import redis

        self.on = on
        self.prefix = prefix
        self.sends = 0
        self.delta_sends = 0
        self._stop = threading.Event()
        self._conn = redis.Redis.from_url(redis_url)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def __enter__(self) -> LayerCounter:
        if self.on:
            self._thread.start()
            self._ready.wait(10)
        self.started = time.monotonic()
        return self

    def _run(self) -> None:
        with self._conn.monitor() as monitor:
            self._ready.set()
            for command in monitor.listen():
                if self._stop.is_set():
                    return
                text = command.get("command") or ""
                verb = text.split(" ", 1)[0].strip('"').upper()
                if verb in ("EVAL", "EVALSHA", "PUBLISH") and self.prefix in text:
                    self.sends += 1
                    if "run.delta" in text:
                        self.delta_sends += 1

    def __exit__(self, *exc) -> None:
        self.seconds = time.monotonic() - self.started
        self._stop.set()
        if not self.on:
            return
        # One more command wakes the monitor loop so it sees the stop.
        self._conn.ping()
        self._thread.join(10)
        self._conn.close()


def _pg_writes(svc: Services) -> dict[str, int]:
    (row,) = svc.query(
        "SELECT tup_inserted + tup_updated + tup_deleted AS writes, xact_commit "
        "FROM pg_stat_database WHERE datname = %s",
        (svc.dbname,),
    )
    return dict(row)


def _pg_tables(svc: Services) -> dict[str, int]:
    rows = svc.query(
        "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS writes FROM pg_stat_user_tables"
    )
    return {r["relname"]: r["writes"] for r in rows}


def _table_diff(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, float]:
    """Row writes per run, by table (tables with none left out)."""
    out = {t: (w - before.get(t, 0)) / n for t, w in after.items()}
    return {t: w for t, w in sorted(out.items(), key=lambda kv: -kv[1]) if w}


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process and its waited-for children (utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _batch(svc, server, workers, token, username, repo, n, stream: bool, transports, monitor):
    clients: list[subprocess.Popen] = []
    try:
        return _batch_run(
            svc, server, workers, token, username, repo, n, stream, transports, monitor, clients
        )
    finally:
        for c in clients:  # a failed batch leaves no client waiting for runs that never end
            if c.poll() is None:
                c.kill()
                c.wait()


def _batch_run(
    svc, server, workers, token, username, repo, n, stream, transports, monitor, clients
):
    proc = manage(
        [
            "shell",
            "-c",
            _CREATE.format(username=username, n=n, repo=str(repo), stream=stream),
        ],
        env=svc.env,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    ids = json.loads(proc.stdout.strip().splitlines()[-1])
    # Subscribed either way: the layer sends a stored event's hint only to a group with
    # members, so the off batch needs its listeners too for a fair count.
    groups = [ids[i::CLIENT_PROCESSES] for i in range(CLIENT_PROCESSES)]
    for group in (g for g in groups if g):
        clients.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.token_stream",
                    "client",
                    "--transports",
                    ",".join(transports),
                    "--runs",
                    ",".join(map(str, group)),
                    "--base",
                    server.base_url,
                    "--token",
                    token,
                ],
                cwd=PROJECT_DIR,
                env=svc.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for c in clients:
        line = c.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"client failed: {line}{c.stderr.read()[-3000:]}")
    streams_live_wait(server.base_url, len(ids) * len(transports))
    # One connection for the whole batch: a new one per poll could find none left.
    poll = svc.connect()
    peak = {"mine": 0, "total": 0}
    before = _pg_writes(svc)
    tables_before = _pg_tables(svc)
    cpu_before = {p: _cpu_s(p) for p in [server.proc.pid, *(w.pid for w in workers)]}
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    layer = LayerCounter(svc.redis_url, svc.env.get("TEKTON_REDIS_PREFIX", ""), on=monitor)
    with layer:
        proc = manage(["shell", "-c", _DISPATCH.format(ids=ids)], env=svc.env, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])

        def done() -> bool:
            # Also the peak of this database's connections: 100 stages hold 100, and
            # PostgreSQL's max_connections (100 here) is shared with everything else.
            (row,) = poll.execute(
                "SELECT (SELECT count(*) FROM runs_run WHERE id = ANY(%s) AND status = ANY(%s))"
                " AS n, (SELECT count(*) FROM pg_stat_activity WHERE datname = %s) AS mine,"
                " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
                " AS total",
                (ids, list(FINISHED), svc.dbname),
            ).fetchall()
            peak["mine"] = max(peak["mine"], row["mine"])
            peak["total"] = max(peak["total"], row["total"])
            return row["n"] == len(ids)

        wait_for(done, timeout=1800, interval=0.25, what=f"{n} runs to finish")
    wall = time.monotonic() - started
    poll.close()
    cpu = {p: _cpu_s(p) - c for p, c in cpu_before.items()}
    load_after = os.getloadavg()[0]
    time.sleep(2.0)  # idle backends flush their statistics within a second
    after = _pg_writes(svc)
    (rows,) = svc.query(
        "SELECT (SELECT count(*) FROM runs_runevent WHERE run_id = ANY(%(ids)s)) AS events, "
        "(SELECT count(*) FROM runs_llmcall WHERE run_id = ANY(%(ids)s)) AS calls, "
        "(SELECT count(*) FROM runs_run WHERE id = ANY(%(ids)s) AND status = 'succeeded') AS ok",
        {"ids": ids},
    )
    latencies: dict[str, list[float]] = {t: [] for t in transports}
    holds: list[float] = []
    paths: list[float] = []
    deltas: dict[str, int] = dict.fromkeys(transports, 0)
    errors: list[str] = []
    unfinished = 0
    client_cpu = 0.0
    for c in clients:
        try:  # still running, or exited and not yet reaped: /proc has its times either way
            client_cpu += _cpu_s(c.pid)
        except OSError:
            pass
    for c in clients:
        out, err = c.communicate(timeout=300)
        lines = out.strip().splitlines()
        if c.returncode != 0 or not lines:
            raise RuntimeError(f"client failed ({c.returncode}):\n{err[-3000:]}")
        data = json.loads(lines[-1])
        errors += data["errors"]
        unfinished += data["unfinished"]
        for t in transports:
            latencies[t] += [x * 1000 for x in data["latencies"][t]]
            holds += [x * 1000 for x in data["splits"][t][0]]
            paths += [x * 1000 for x in data["splits"][t][1]]
            deltas[t] += data["deltas"][t]
    return {
        "runs": n,
        "stream": stream,
        "succeeded": rows["ok"],
        "wall_s": wall,
        "latencies": latencies,
        "holds": holds,
        "paths": paths,
        "tables": _table_diff(tables_before, _pg_tables(svc), n),
        "deltas": deltas,
        "errors": errors,
        "unfinished": unfinished,
        "layer_sends": layer.sends,
        "layer_delta_sends": layer.delta_sends,
        "layer_seconds": layer.seconds,
        "writes_per_run": (after["writes"] - before["writes"]) / n,
        "commits_per_run": (after["xact_commit"] - before["xact_commit"]) / n,
        "events_per_run": rows["events"] / n,
        "calls_per_run": rows["calls"] / n,
        "cpu_server_s": cpu[server.proc.pid],
        "cpu_workers_s": sum(v for p, v in cpu.items() if p != server.proc.pid),
        "cpu_clients_s": client_cpu,
        "connections": peak,
        "load": (load_before, load_after),
    }


def _fmt(values: list[float], p: float) -> str:
    return f"{percentile(values, p):.0f}" if values else "n/a"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    client = sub.add_parser("client")
    client.add_argument("--transports", required=True)
    client.add_argument("--runs", required=True)
    client.add_argument("--base", required=True)
    client.add_argument("--token", required=True)
    client.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--runs", default="1,100", help="concurrent run counts (default 1,100)")
    parser.add_argument("--latency-ms", type=int, default=1000, help="offline latency per call")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=100, help="threads per worker")
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument(
        "--layer",
        choices=["redis", "pubsub"],
        default="redis",
        help="channel layer: the project's (redis) or channels_redis' pub/sub one",
    )
    parser.add_argument(
        "--no-monitor", action="store_true", help="no Redis MONITOR (no layer message count)"
    )
    parser.add_argument("--server", choices=SERVERS, default="uvicorn", help="the web process")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.cmd == "client":
        asyncio.run(_client_main(args))
        return

    counts = [int(x) for x in args.runs.split(",") if x.strip()]
    transports = [t for t in args.transports.split(",") if t]
    work = Path(tempfile.mkdtemp(prefix="tekton-bench-tokens-"))
    svc = Services.create(
        work_dir=work,
        # A long lease: under load a heartbeat can be late, and a false "worker died"
        # would re-run stages and distort every figure.
        extra_env={
            "TEKTON_HEARTBEAT_SECONDS": "5",
            "TEKTON_STAGE_LEASE_SECONDS": "120",
            "TEKTON_LOG_LEVEL": "WARNING",
            **(
                {"DJANGO_SETTINGS_MODULE": "bench.pubsub_settings"}
                if args.layer == "pubsub"
                else {}
            ),
        },
    )
    rows = []
    workers: list[Worker] = []
    server = None
    try:
        svc.migrate()
        from tests.integration.harness import make_git_repo

        repo = make_git_repo(svc.repo_root / "sample")
        for i in range(args.workers):
            workers.append(
                Worker(
                    env=svc.env,
                    queue=svc.queue,
                    log_path=work / f"worker-{i + 1}.log",
                    concurrency=args.concurrency,
                    extra_env={
                        "TEKTON_OFFLINE_LATENCY_MS": str(args.latency_ms),
                        "TEKTON_OFFLINE_STREAM_STAMPS": "1",
                        "TEKTON_WORKER_CONCURRENCY": str(args.concurrency),
                    },
                )
            )
        for worker in workers:
            worker.wait_ready()
        server = AsgiServer(
            env={**svc.env, "TEKTON_METRICS_TOKEN": METRICS_TOKEN},
            log_path=work / f"{args.server}.log",
            server=args.server,
        )
        server.wait_ready()
        username = "bench-tokens"
        token = user_token(svc.env, username, staff=True)
        for n in counts:
            # Latency without MONITOR (it slows Redis and costs CPU); the on/off comparison
            # with it, both passes under the same conditions.
            for stream, monitor in ((True, False), (True, True), (False, True)):
                if args.no_monitor and monitor:
                    continue
                row = _batch(
                    svc,
                    server,
                    workers,
                    token,
                    username,
                    repo,
                    n,
                    stream,
                    transports,
                    monitor,
                )
                row["monitor"] = monitor
                rows.append(row)
                lat = "; ".join(
                    f"{t} p50 {_fmt(v, 50)} ms p95 {_fmt(v, 95)} ms ({len(v)} tokens)"
                    for t, v in row["latencies"].items()
                    if stream and not monitor
                )
                print(
                    f"{n:>4} runs, streaming {'on ' if stream else 'off'}"
                    f"{' (MONITOR)' if monitor else ''}: "
                    f"{row['succeeded']}/{n} succeeded in {row['wall_s']:.1f} s; "
                    f"layer {row['layer_sends'] / row['layer_seconds']:.0f} msg/s "
                    f"({row['layer_delta_sends']} deltas); writes/run {row['writes_per_run']:.0f}, "
                    f"events/run {row['events_per_run']:.0f}; CPU {args.server} "
                    f"{row['cpu_server_s']:.1f} s, workers {row['cpu_workers_s']:.1f} s, "
                    f"clients {row['cpu_clients_s']:.1f} s; "
                    f"load {row['load'][0]:.1f}->{row['load'][1]:.1f}"
                    + (f"\n     {lat}" if lat else "")
                    + (
                        f"\n     held back p50 {_fmt(row['holds'], 50)} ms p95 "
                        f"{_fmt(row['holds'], 95)} ms; path p50 {_fmt(row['paths'], 50)} ms "
                        f"p95 {_fmt(row['paths'], 95)} ms"
                        if stream and not monitor
                        else ""
                    )
                    + f"\n     writes/run by table {row['tables']}"
                    + f"\n     peak PostgreSQL connections {row['connections']}"
                    + (f"\n     errors {row['errors']}" if row["errors"] else ""),
                    flush=True,
                )
    finally:
        if server is not None:
            server.stop()
        for worker in workers:
            worker.stop()
        svc.close()
    if not args.no_write:
        name = "token_stream" if args.layer == "redis" else "token_stream_pubsub"
        doc_section_write(name, _doc(args, rows, transports))
        print(f"wrote the {name} section of docs/benchmarks.md")


def _doc(args, rows: list[dict], transports: list[str]) -> str:
    names = {"sse": "SSE", "ws": "WebSocket", "tui": "TUI (RunStream)"}
    lines = [
        "## Streamed tokens: provider to subscriber (issue 11, section 5)"
        + ("" if args.layer == "redis" else ", pub/sub channel layer"),
        "",
        f"`uv run python -m bench.token_stream --runs {args.runs} --latency-ms "
        f"{args.latency_ms} --workers {args.workers} --concurrency {args.concurrency}"
        + ("" if args.layer == "redis" else " --layer pubsub")
        + f"` on {machine()}; services mode (PostgreSQL, Redis channel layer: "
        + (
            "the project's `RedisChannelLayer`"
            if args.layer == "redis"
            else "`channels_redis.pubsub.RedisPubSubChannelLayer`, bench/pubsub_settings.py"
        )
        + f"), {args.workers} Celery "
        f"worker process(es) with {args.concurrency} threads, one {args.server} process; each run is "
        "the plan stage alone (10 LLM calls, 4 sequential steps) on the offline backend, "
        f"{args.latency_ms} ms a call streamed in 12 pieces. Every run has one subscriber per "
        "transport, in 3 client processes on the same machine. Latency runs from the wall "
        "time stamped into a piece as it leaves the provider to the moment the subscriber "
        "has that stamp whole, over every (subscriber, piece). Target: p95 <= 100 ms at 100.",
        "",
        "| runs | transport | p50 ms | p95 ms | max ms | pieces timed per run | 1-min load (start -> end) |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if not r["stream"] or r["monitor"]:
            continue
        for t in transports:
            v = r["latencies"][t]
            lines.append(
                f"| {r['runs']} | {names[t]} | {_fmt(v, 50)} | {_fmt(v, 95)} | "
                f"{max(v) if v else float('nan'):.0f} | {len(v) / r['runs']:.0f} | "
                f"{r['load'][0]:.1f} -> {r['load'][1]:.1f} |"
            )
    lines += [
        "",
        "Where the time goes, over the same pieces (all transports): a piece may leave the "
        "worker only once it is not in the call's open tail, the end of the text that could "
        f"still become a secret (within the last {HOLD_CHARS} characters: the redaction "
        "hold, swarm/deltas.py), or the call ends, so its *gate* is the send time "
        "of the piece that took the text that far; *held back* = gate - stamp (set by the "
        "provider's pace: here one piece every "
        f"{args.latency_ms / 12:.0f} ms), *path* = arrival - gate (the 50 ms coalescer, "
        "the channel layer, the hub in the web process, the transport and the client).",
        "",
        "| runs | held back p50 ms | held back p95 ms | path p50 ms | path p95 ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["stream"] and not r["monitor"]:
            lines.append(
                f"| {r['runs']} | {_fmt(r['holds'], 50)} | {_fmt(r['holds'], 95)} | "
                f"{_fmt(r['paths'], 50)} | {_fmt(r['paths'], 95)} |"
            )
    lines += [
        "",
        'Streaming on versus off (the run config `"stream": false`: providers called '
        "without streaming, no deltas; the same subscribers), each pass under Redis MONITOR "
        "(the latency rows above come from a pass without it). Channel-layer "
        "messages: the layer's group sends seen by Redis MONITOR under this bench's prefix "
        "(stored events' hints and delta batches) over the batch's wall time. Database "
        "writes: rows inserted + updated + deleted in the bench database "
        "(`pg_stat_database`), per run.",
        "",
        "| runs | streaming | wall s | layer msg/s | of which delta msgs | DB row writes / run "
        "| commits / run | RunEvent rows / run | LlmCall rows / run | CPU s: workers, web process, clients |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in (r for r in rows if r["monitor"]):
        lines.append(
            f"| {r['runs']} | {'on' if r['stream'] else 'off'} | {r['wall_s']:.1f} | "
            f"{r['layer_sends'] / r['layer_seconds']:.0f} | {r['layer_delta_sends']} | "
            f"{r['writes_per_run']:.0f} | {r['commits_per_run']:.0f} | "
            f"{r['events_per_run']:.0f} | {r['calls_per_run']:.0f} | "
            f"{r['cpu_workers_s']:.1f}, {r['cpu_server_s']:.1f}, {r['cpu_clients_s']:.1f} |"
        )
    lines += ["", "Row writes per run by table (`pg_stat_user_tables`):", ""]
    for r in (r for r in rows if r["monitor"]):
        tables = ", ".join(f"{t} {w:.1f}" for t, w in r["tables"].items())
        lines.append(f"- {r['runs']} runs, streaming {'on' if r['stream'] else 'off'}: {tables}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
