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
import subprocess
import sys
import tempfile
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
        _wait_all(svc, ids, timeout=3600)
        print(
            f"all finished {time.perf_counter() - started:.1f} s after the first create call",
            flush=True,
        )
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

| worker | calls in flight (max) | VmHWM |
|---|---|---|
{worker_rows}
"""
    if not args.no_write:
        doc_section_write("concurrency" if not bare else "concurrency_bare", body)
        print("wrote the concurrency section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
