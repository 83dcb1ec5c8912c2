"""Issue 2, section 8 (d): many concurrent runs in services mode at a slow offline latency.

    uv run python -m bench.concurrency [--runs 100] [--latency-ms 1000] [--workers 1]
                                       [--concurrency 100] [--no-write]

PostgreSQL + Redis + `--workers` real Celery worker processes (threads pool, `-c
--concurrency`). First one run alone (its wall time), then `--runs` runs created at once.
Figures: total wall time (first created_at -> last finished_at) against one run's; LLM
calls in flight per worker process (the largest overlap of [created_at - latency_ms,
created_at] among the calls of the stages that process ran; target >= 50); peak RSS per
worker process (VmHWM from /proc before it stops; target <= 300 MB); and the peak RSS of
the CLI (`manage.py tekton run`, embedded mode, following one full run to the end).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from bench.common import (
    EmbeddedEnv,
    child,
    doc_section_write,
    dump_runs,
    final_calls,
    machine,
    max_overlap,
)
from bench.overhead import _BARE_ENV, _bare_config, _bare_repo
from tests.integration.harness import (
    MANAGE_PY,
    PROJECT_DIR,
    Services,
    Worker,
    make_git_repo,
    wait_for,
)

FINISHED = ("succeeded", "failed", "cancelled", "blocked")


def _wait_all(svc: Services, run_ids: list[int], timeout: float) -> None:
    def done() -> bool:
        rows = svc.query(
            "SELECT count(*) AS n FROM runs_run WHERE id = ANY(%s) AND status = ANY(%s)",
            (run_ids, list(FINISHED)),
        )
        return rows[0]["n"] == len(run_ids)

    wait_for(done, timeout=timeout, interval=0.5, what=f"{len(run_ids)} runs to finish")


def _in_flight_per_worker(runs: list[dict]) -> dict[str, int]:
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        worker_of = {s["stage"]: s["worker"] for s in run["stages"]}
        for call in final_calls(run):
            worker = worker_of.get(call["stage"], "?")
            spans[worker].append(
                (call["created_at"] - call["latency_ms"] / 1000, call["created_at"])
            )
    return {w: max_overlap(s) for w, s in spans.items()}


class ConnectionPeak:
    """The most PostgreSQL client connections seen at once (all databases, and the
    bench's), sampled twice a second in a thread, beside the server's max_connections."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.total = self.mine = 0
        self.limit = int(svc.query("SHOW max_connections")[0]["max_connections"])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConnectionPeak:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                (row,) = self.svc.query(
                    "SELECT count(*) FILTER (WHERE datname = %s) AS mine, count(*) AS total "
                    "FROM pg_stat_activity WHERE backend_type = 'client backend'",
                    (self.svc.dbname,),
                )
            except Exception:  # noqa: BLE001 - a sample lost under load is no figure lost
                continue
            self.mine = max(self.mine, row["mine"])
            self.total = max(self.total, row["total"])

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _stage_busy_s(runs: list[dict]) -> float:
    """Thread-seconds the stages held: each final attempt's first call's start to its last
    call's end (a stage holds one worker thread for that long, at least)."""
    total = 0.0
    for run in runs:
        spans: dict[str, list[float]] = defaultdict(list)
        for call in final_calls(run):
            spans[call["stage"]] += [
                call["created_at"] - call["latency_ms"] / 1000,
                call["created_at"],
            ]
        total += sum(max(v) - min(v) for v in spans.values())
    return total


def cli_peak_rss_kb() -> tuple[int, str]:
    """Peak RSS of `manage.py tekton run` following one full embedded run (latency 0)."""
    env = EmbeddedEnv.create(latency_ms=0)
    # A fresh parent whose only child is the CLI, so RUSAGE_CHILDREN is the CLI's own peak.
    probe = (
        "import resource, subprocess, sys\n"
        "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
        "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    cmd = [
        sys.executable,
        str(MANAGE_PY),
        "tekton",
        "run",
        "--goal",
        "Add a subtract function",
        "--repo",
        str(env.repo),
    ]
    out = subprocess.run(
        [sys.executable, "-c", probe, *cmd],
        cwd=PROJECT_DIR,
        env=env.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    rc, kb = out.stdout.split()
    return int(kb), f"exit {rc}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100, help="concurrent runs (default 100)")
    parser.add_argument(
        "--latency-ms", type=int, default=1000, help="offline latency per call (default 1000)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--concurrency", type=int, default=100, help="threads per worker (default 100)"
    )
    parser.add_argument(
        "--profile",
        choices=("defaults", "bare"),
        default="defaults",
        help="defaults, or bare: tools, sandboxed tests and retrieval off (bench.overhead's)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone"
    )
    args = parser.parse_args(argv)
    bare = args.profile == "bare"
    config = ["--config", json.dumps(_bare_config())] if bare else []

    work = Path(tempfile.mkdtemp(prefix="tekton-bench-conc-"))
    svc = Services.create(
        work_dir=work,
        # A long lease: under load a heartbeat can be late, and a false "worker died" would
        # re-run stages and distort every figure.
        extra_env={
            "TEKTON_HEARTBEAT_SECONDS": "5",
            "TEKTON_STAGE_LEASE_SECONDS": "120",
            "TEKTON_LOG_LEVEL": "WARNING",
            **(_BARE_ENV if bare else {}),
        },
    )
    workers: list[Worker] = []
    try:
        svc.migrate()
        repo = make_git_repo(svc.repo_root / "sample")
        if bare:
            _bare_repo(repo)
        for i in range(args.workers):
            workers.append(
                Worker(
                    env=svc.env,
                    queue=svc.queue,
                    log_path=work / f"worker-{i + 1}.log",
                    concurrency=args.concurrency,
                    extra_env={
                        "TEKTON_OFFLINE_LATENCY_MS": str(args.latency_ms),
                        "TEKTON_WORKER_CONCURRENCY": str(args.concurrency),
                    },
                )
            )
        for worker in workers:
            worker.wait_ready()

        print(f"one run alone at {args.latency_ms} ms ...", flush=True)
        (single_id,) = child(
            [
                "create-runs",
                "--goal",
                "Add a subtract function (alone)",
                "--repo",
                str(repo),
                "-n",
                "1",
                *config,
            ],
            env=svc.env,
        )["run_ids"]
        _wait_all(svc, [single_id], timeout=1800)
        (single,) = dump_runs([single_id], env=svc.env)
        single_wall = single["finished_at"] - single["created_at"]
        print(f"one run: {single_wall:.1f} s ({single['status']})", flush=True)

        print(f"{args.runs} runs at once ...", flush=True)
        cpu_before = {w.pid: _cpu_s(w.pid) for w in workers}
        peak = ConnectionPeak(svc).__enter__()
        started = time.perf_counter()
        ids = child(
            [
                "create-runs",
                "--goal",
                "Add a subtract function",
                "--repo",
                str(repo),
                "-n",
                str(args.runs),
                *config,
            ],
            env=svc.env,
        )["run_ids"]
        _wait_all(svc, ids, timeout=3 * 3600)
        print(
            f"all finished {time.perf_counter() - started:.1f} s after the first create call",
            flush=True,
        )
        peak.__exit__()
        worker_cpu = sum(_cpu_s(w.pid) - cpu_before[w.pid] for w in workers)
        hwm_kb = {w.name: w.vm_hwm_kb() for w in workers}
        runs = dump_runs(ids, env=svc.env)
    finally:
        for worker in workers:
            worker.stop()
        svc.close()

    total_wall = max(r["finished_at"] for r in runs) - min(r["created_at"] for r in runs)
    statuses = defaultdict(int)
    for r in runs:
        statuses[r["status"]] += 1
    in_flight = _in_flight_per_worker(runs)
    reruns = sum(1 for r in runs for s in r["stages"] if s["attempt"] > 1)
    cli_kb, cli_note = cli_peak_rss_kb()
    # Where the ceiling is: the wall time the worker threads alone allow (every stage
    # holds a thread), and the one the workers' CPU alone allows on this machine's cores.
    threads = args.workers * args.concurrency
    threads_floor = _stage_busy_s(runs) / threads
    cpu_floor = worker_cpu / (os.cpu_count() or 1)
    print(
        f"(d) floors: threads {threads_floor:.1f} s ({threads} threads), worker CPU "
        f"{worker_cpu:.1f} s = {cpu_floor:.1f} s on {os.cpu_count()} cores; peak PostgreSQL "
        f"connections {peak.total} of {peak.limit} (the bench's {peak.mine})"
    )

    print(
        f"(d) total wall {total_wall:.1f} s vs one run {single_wall:.1f} s: {total_wall / single_wall:.2f}x"
    )
    print(f"(d) run statuses {dict(statuses)}, stages re-run {reruns}")
    print(f"(d) LLM calls in flight per worker: {in_flight}")
    print(
        f"(d) worker peak RSS (MB): { {k: round((v or 0) / 1024, 1) for k, v in hwm_kb.items()} }"
    )
    print(f"(d) CLI peak RSS for one embedded run: {cli_kb / 1024:.1f} MB ({cli_note})")

    def calls_of(name: str) -> int:
        # StageRun.worker holds the Celery hostname, "<name>@<host>".
        return max((n for w, n in in_flight.items() if w.startswith(name + "@")), default=0)

    worker_rows = "\n".join(
        f"| worker process {i + 1} | {calls_of(name)} | {(hwm_kb[name] or 0) / 1024:.0f} MB |"
        for i, name in enumerate(hwm_kb)
    )
    body = f"""
## (d) concurrent runs in services mode, {args.profile} profile

`uv run python -m bench.concurrency --runs {args.runs} --latency-ms {args.latency_ms} --workers {args.workers} --concurrency {args.concurrency} --profile {args.profile}`
on {machine()}: PostgreSQL, Redis, {args.workers} Celery worker process(es) with a
{args.concurrency}-thread pool, offline backend at {args.latency_ms} ms per call;
{"tools, sandboxed tests and retrieval off (comparable with the issue-2 figure, 2.87x)" if bare else "the default profile: tools, pytest in bubblewrap at test_debug, retrieval"}.

| figure | measured | target |
|---|---|---|
| one run alone, wall time | {single_wall:.1f} s | |
| {args.runs} runs at once, first created -> last finished | {total_wall:.1f} s | |
| **ratio** | **{total_wall / single_wall:.2f}x** | |
| run outcomes | {", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))}; stages re-run: {reruns} | |
| **LLM calls in flight per worker process (max)** | **{max(in_flight.values()) if in_flight else 0}** | >= 50 |
| **peak RSS per worker process (max VmHWM)** | **{max((v or 0) for v in hwm_kb.values()) / 1024:.0f} MB** | <= 300 MB |
| peak RSS of the CLI following one full embedded run | {cli_kb / 1024:.0f} MB | |
| workers' CPU for the {args.runs} runs (user + system) | {worker_cpu:.0f} s ({worker_cpu / args.runs:.2f} s per run) | |
| floor from the threads: stage-seconds / {threads} threads | {threads_floor:.1f} s | |
| floor from the CPU: workers' CPU / {os.cpu_count()} cores | {cpu_floor:.1f} s | |
| peak PostgreSQL client connections, all / this bench's | {peak.total} / {peak.mine} of max_connections {peak.limit} | < {peak.limit} |

| worker | calls in flight (max) | VmHWM |
|---|---|---|
{worker_rows}
"""
    if not args.no_write:
        # The 1,000-run case (issue 14 §2) has its own section beside the 100-run ones.
        section = "concurrency" if not bare else "concurrency_bare"
        doc_section_write(section + ("_scale" if args.runs > 100 else ""), body)
        print("wrote the concurrency section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
