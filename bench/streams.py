"""Issue 3, section 5: event commit-to-receipt latency over SSE and WebSocket.

    uv run python -m bench.streams [--servers daphne,uvicorn] [--subscribers 1,100,1000]
                                   [--events 40] [--no-write]

Services mode: PostgreSQL, Redis (channels_redis) and ONE server process at a time
(daphne, then uvicorn; `--servers`) serving `tekton_site.asgi`. For each server,
transport and subscriber count, N clients (spread over a few client processes, and lean,
so the client side takes as little of the machine as it can) follow one run; once all
are connected, an emitter process records `--events` events with `runs.events.event_record`
(each payload carries the wall time taken just before the record call, so the latency
counts the insert and the commit too), then `run.finished`. Every client notes the
arrival time of each event. Latency = arrival - that time, p50 and p95 over every
(subscriber, event) pair; lost = events a subscriber never got. Targets: p95 <= 50 ms at
100 subscribers, <= 250 ms at 1,000, 0 lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    METRICS_TOKEN,
    doc_section_write,
    machine,
    percentile,
    streams_live_wait,
)
from tests.integration.harness import (
    PROJECT_DIR,
    Services,
    manage,
)
from tests.streams.live import SERVERS, UVICORN_FLAGS, AsgiServer, user_token

CLIENT_PROCESSES = 4
SERVER_NOTE = (
    "daphne as `manage.py runserver` runs it; uvicorn as the production web process of "
    f"docs/deploy runs it, `{' '.join(UVICORN_FLAGS)}`"
)

_CREATE_RUN = """
from django.contrib.auth import get_user_model
from runs.models import Run
owner = get_user_model().objects.get(username={username!r})
run = Run.objects.create(goal="stream benchmark", repo_path="/tmp/bench", profile_name="bench",
                         stage_from="plan", stage_to="release", status="running", owner=owner)
print(run.pk)
"""

_EMIT = """
import time
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from runs.events import event_record
from runs.models import Run
# Warm up: the first query and the first publish open their connections; that start-up
# cost belongs to the emitter, not to the streams.
Run.objects.filter(pk={run_id}).exists()
async_to_sync(get_channel_layer().group_send)("tekton.bench.warmup", {{"type": "noop"}})
for n in range({events}):
    event_record(run_id={run_id}, kind="stage.progress", stage="plan",
                 payload={{"n": n, "sent_at": time.time()}})
    time.sleep({interval})
Run.objects.filter(pk={run_id}).update(status="succeeded")
event_record(run_id={run_id}, kind="run.finished", payload={{"sent_at": time.time()}})
"""


# --- client processes -------------------------------------------------------------------


async def _sse_subscriber(
    base: str, path: str, token: str, ready: asyncio.Event, out: list
) -> None:
    """One SSE stream read with as little client work as can be: an HTTP/1.0 request (so
    the body comes unchunked until the server closes), split on blank lines, and only the
    `data:` line parsed. With httpx and a line parser, 1,000 clients on this 2-core machine
    took more CPU than the server they measured, and every millisecond they take is one
    the server waits for a core."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status:
        raise RuntimeError(f"stream answered {status!r}")
    ready.set()
    buffer = b""
    try:
        while chunk := await reader.read(65536):
            now = time.time()
            buffer += chunk
            *messages, buffer = buffer.split(b"\n\n")
            for message in messages:
                data = next((ln for ln in message.split(b"\n") if ln.startswith(b"data: ")), None)
                if data is None or b'"seq":' not in data:
                    continue  # retry:, a heartbeat
                event = json.loads(data[6:])
                out.append((event["seq"], now - event["payload"]["sent_at"]))
                if event["kind"] == "run.finished":
                    return
    finally:
        writer.close()


async def _ws_subscriber(uri: str, origin: str, ready: asyncio.Event, out: list) -> None:
    import websockets

    async with websockets.connect(uri, origin=origin, max_queue=None, open_timeout=120) as ws:
        ready.set()
        async for text in ws:
            now = time.time()
            event = json.loads(text)
            out.append((event["seq"], now - event["payload"]["sent_at"]))
            if event["kind"] == "run.finished":
                return


async def _client_main(args) -> None:
    results: list[list] = [[] for _ in range(args.n)]
    readies = [asyncio.Event() for _ in range(args.n)]
    if args.transport == "sse":
        path = f"/api/runs/{args.run}/events"
        tasks = [
            asyncio.create_task(
                _sse_subscriber(args.base, path, args.token, readies[i], results[i])
            )
            for i in range(args.n)
        ]
    else:
        uri = args.base.replace("http://", "ws://") + f"/ws/runs/{args.run}/?token={args.token}"
        tasks = [
            asyncio.create_task(_ws_subscriber(uri, args.base, readies[i], results[i]))
            for i in range(args.n)
        ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    print("ready", flush=True)
    cpu_start = time.process_time()
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    cpu = time.process_time() - cpu_start
    for task in pending:
        task.cancel()
    errors = [repr(t.exception()) for t in done if t.exception() is not None]
    print(json.dumps({"results": results, "errors": errors[:5], "cpu_s": cpu}), flush=True)


# --- orchestration ------------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc (0.0 where it cannot say)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(server, env, token, username, transport: str, n: int, events: int, interval: float):
    proc = manage(["shell", "-c", _CREATE_RUN.format(username=username)], env=env, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    run_id = int(proc.stdout.strip().splitlines()[-1])
    per = [
        n // CLIENT_PROCESSES + (1 if i < n % CLIENT_PROCESSES else 0)
        for i in range(CLIENT_PROCESSES)
    ]
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.streams",
                "client",
                "--transport",
                transport,
                "--n",
                str(k),
                "--base",
                server.base_url,
                "--run",
                str(run_id),
                "--token",
                token,
                "--timeout",
                str(events * interval + 120),
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in per
        if k
    ]
    for c in clients:
        line = c.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"client failed: {line}{c.stderr.read()[-3000:]}")
    streams_live_wait(server.base_url, n)
    server_cpu = _cpu_s(server.proc.pid)
    emit = manage(
        ["shell", "-c", _EMIT.format(events=events, run_id=run_id, interval=interval)],
        env=env,
        timeout=events * interval + 120,
    )
    if emit.returncode != 0:
        raise RuntimeError(emit.stderr[-2000:])
    latencies: list[float] = []
    lost = 0
    errors: list[str] = []
    clients_cpu = 0.0
    for c in clients:
        out, err = c.communicate(timeout=events * interval + 180)
        data = json.loads(out.strip().splitlines()[-1])
        errors += data["errors"]
        clients_cpu += data["cpu_s"]
        for sub in data["results"]:
            seqs = [s for s, _ in sub]
            lost += (events + 1) - len(set(seqs))
            latencies += [lat * 1000 for _, lat in sub]
    return {
        "transport": transport,
        "subscribers": n,
        "events": events + 1,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "max_ms": max(latencies) if latencies else float("nan"),
        "received": len(latencies),
        "lost": lost,
        "errors": errors,
        # From the emitter's start to the last client's end: what delivering cost each side.
        "server_cpu_s": _cpu_s(server.proc.pid) - server_cpu,
        "clients_cpu_s": clients_cpu,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    client = sub.add_parser("client")
    client.add_argument("--transport", choices=["sse", "ws"], required=True)
    client.add_argument("--n", type=int, required=True)
    client.add_argument("--base", required=True)
    client.add_argument("--run", type=int, required=True)
    client.add_argument("--token", required=True)
    client.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--servers", default="daphne,uvicorn", help="comma-separated")
    parser.add_argument("--subscribers", default="1,100,1000")
    parser.add_argument("--transports", default="sse,ws")
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--interval-ms", type=float, default=50)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.cmd == "client":
        asyncio.run(_client_main(args))
        return

    counts = [int(x) for x in args.subscribers.split(",") if x.strip()]
    servers = [x.strip() for x in args.servers.split(",") if x.strip()]
    for name in servers:
        if name not in SERVERS:
            parser.error(f"--servers: unknown server {name!r} (one of {', '.join(SERVERS)})")
    work = Path(tempfile.mkdtemp(prefix="tekton-bench-streams-"))
    services = Services.create(
        work_dir=work,
        extra_env={"TEKTON_LOG_LEVEL": "WARNING"},
    )
    rows = []
    peaks: dict[str, int | None] = {}
    try:
        services.migrate()
        username = "bench-streams"
        token = user_token(services.env, username)
        for name in servers:
            server = AsgiServer(
                env={**services.env, "TEKTON_METRICS_TOKEN": METRICS_TOKEN},
                log_path=work / f"{name}.log",
                server=name,
            )
            try:
                server.wait_ready()
                for transport in args.transports.split(","):
                    for n in counts:
                        row = _measure(
                            server,
                            services.env,
                            token,
                            username,
                            transport,
                            n,
                            args.events,
                            args.interval_ms / 1000,
                        )
                        row["server"] = name
                        rows.append(row)
                        print(
                            f"{name:>7} {transport:>3} {n:>5} subscribers: "
                            f"p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms, "
                            f"max {row['max_ms']:.1f} ms, received {row['received']}, "
                            f"lost {row['lost']}; CPU server {row['server_cpu_s']:.2f} s, "
                            f"clients {row['clients_cpu_s']:.2f} s"
                            + (f", errors {row['errors']}" if row["errors"] else ""),
                            flush=True,
                        )
                peaks[name] = server.vm_hwm_kb()
            finally:
                server.stop()
    finally:
        services.close()
    for name, peak in peaks.items():
        print(f"{name} peak RSS: {peak / 1024:.0f} MB" if peak else f"{name} peak RSS: n/a")
    if args.no_write:
        return
    lines = [
        "## Live event streams: commit to receipt (issue 3, section 5)",
        "",
        f"`uv run python -m bench.streams --servers {args.servers} --subscribers "
        f"{args.subscribers} --events {args.events} --interval-ms {args.interval_ms:g}` on "
        f"{machine()}; services mode (PostgreSQL, Redis channel layer), one server process at "
        f"a time ({SERVER_NOTE}); clients in {CLIENT_PROCESSES} processes on the same "
        "machine, SSE read as raw HTTP/1.0 streams, WebSocket with `websockets`. Latency "
        "runs from just before `event_record` (insert + commit + publish) to the client's "
        f"receipt, over every (subscriber, event) pair; {args.events} events "
        f"{args.interval_ms:g} ms apart plus `run.finished`. CPU: the server's and the "
        "clients' from the first event to the last client's end (connection teardown "
        "included). Targets: p95 <= 50 ms at 100, <= 250 ms at 1,000, 0 lost.",
        "",
        "| server | transport | subscribers | p50 ms | p95 ms | max ms | received | lost "
        "| server CPU s | clients CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['server']} | {r['transport'].upper()} | {r['subscribers']} | "
            f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['max_ms']:.1f} | {r['received']} | "
            f"{r['lost']} | {r['server_cpu_s']:.2f} | {r['clients_cpu_s']:.2f} |"
        )
    lines += [
        "",
        "Peak resident memory: "
        + ", ".join(f"{name} {peak / 1024:.0f} MB" for name, peak in peaks.items() if peak)
        + ".",
    ]
    doc_section_write("streams", "\n".join(lines))


if __name__ == "__main__":
    main()
