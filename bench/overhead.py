"""Issue 2, section 8 (c): per-stage orchestration overhead at offline latency 0.

    uv run python -m bench.overhead [--runs 3] [--skip-services] [--no-write]

Overhead is wall time that is not spent inside provider calls: for each stage, its
started_at -> finished_at minus the union of its LLM calls' intervals
[created_at - latency_ms, created_at]; for the run as a whole, created_at -> finished_at
minus the union of all its calls, divided by the stages on its critical chain (review and
threat share a slot), so it also counts dispatch, queueing and claiming between stages.
Embedded mode executes in-process (SQLite, run_inline, what the CLI does); services mode
uses PostgreSQL, Redis and one real Celery worker subprocess, one run at a time.
Targets: embedded <= 5 ms per stage, services p95 <= 20 ms per stage.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import (
    EmbeddedEnv,
    child,
    critical_path_steps,
    doc_section_write,
    dump_runs,
    final_calls,
    machine,
    mean,
    percentile,
    provider_time_s,
)
from tests.integration.harness import (
    Services,
    Worker,
    make_git_repo,
    wait_for,
)

FINISHED = ("succeeded", "failed", "cancelled", "blocked")


def overheads(runs: list[dict]) -> dict:
    """Per-stage and per-run overheads in milliseconds."""
    stage_ms: list[float] = []
    stage_wall_ms: list[float] = []
    run_ms: list[float] = []
    for run in runs:
        calls = final_calls(run)
        for stage in run["stages"]:
            if stage["started_at"] is None or stage["finished_at"] is None:
                continue
            wall = stage["finished_at"] - stage["started_at"]
            inside = provider_time_s([c for c in calls if c["stage"] == stage["stage"]])
            stage_wall_ms.append(wall * 1000)
            stage_ms.append((wall - inside) * 1000)
        _, chain = critical_path_steps(run)
        wall = run["finished_at"] - run["created_at"]
        run_ms.append((wall - provider_time_s(calls)) * 1000 / max(1, len(chain)))
    return {
        "stage_wall_mean": mean(stage_wall_ms),
        "stage_mean": mean(stage_ms),
        "stage_p95": percentile(stage_ms, 95),
        "run_mean": mean(run_ms),
        "run_p95": percentile(run_ms, 95),
        "stages": len(stage_ms),
        "statuses": sorted({r["status"] for r in runs}),
    }


def embedded(n: int) -> dict:
    env = EmbeddedEnv.create(latency_ms=0)
    # One warm-up run: the first run in a process pays imports and the first queries.
    ids = []
    for i in range(n + 1):
        result = child(
            [
                "embedded-run",
                "--goal",
                f"Add a subtract function (overhead {i})",
                "--repo",
                str(env.repo),
            ],
            env=env.env,
        )
        ids.append(result["run_id"])
    return overheads(dump_runs(ids[1:], env=env.env))


def services(n: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="tekton-bench-svc-"))
    svc = Services.create(
        work_dir=work,
        # Default-like lease: the benchmark measures, it does not exercise recovery.
        extra_env={
            "TEKTON_HEARTBEAT_SECONDS": "5",
            "TEKTON_STAGE_LEASE_SECONDS": "30",
            "TEKTON_LOG_LEVEL": "WARNING",
        },
    )
    worker = None
    try:
        svc.migrate()
        repo = make_git_repo(svc.repo_root / "sample")
        worker = Worker(
            env=svc.env,
            queue=svc.queue,
            log_path=work / "worker.log",
            extra_env={"TEKTON_OFFLINE_LATENCY_MS": "0"},
        )
        worker.wait_ready()
        ids = []
        for i in range(n + 1):
            (run_id,) = child(
                [
                    "create-runs",
                    "--goal",
                    f"Add a subtract function (overhead {i})",
                    "--repo",
                    str(repo),
                    "-n",
                    "1",
                ],
                env=svc.env,
            )["run_ids"]
            wait_for(
                lambda run_id=run_id: (
                    svc.query("SELECT status FROM runs_run WHERE id = %s", (run_id,))[0]["status"]
                    in FINISHED
                ),
                timeout=300,
                interval=0.2,
                what=f"run {run_id} to finish",
            )
            ids.append(run_id)
        return overheads(dump_runs(ids[1:], env=svc.env))
    finally:
        if worker is not None:
            worker.stop()
        svc.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="measured runs per mode (default 3, plus one warm-up)"
    )
    parser.add_argument("--skip-services", action="store_true", help="embedded mode only")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    emb = embedded(args.runs)
    print(
        f"(c) embedded: per stage overhead mean {emb['stage_mean']:.1f} ms, p95 {emb['stage_p95']:.1f} ms "
        f"(stage wall mean {emb['stage_wall_mean']:.1f} ms); run-level {emb['run_mean']:.1f} ms per stage slot "
        f"[{emb['stages']} stages, runs {emb['statuses']}]",
        flush=True,
    )
    svc = None
    if not args.skip_services:
        svc = services(args.runs)
        print(
            f"(c) services: per stage overhead mean {svc['stage_mean']:.1f} ms, p95 {svc['stage_p95']:.1f} ms "
            f"(stage wall mean {svc['stage_wall_mean']:.1f} ms); run-level {svc['run_mean']:.1f} ms "
            f"(p95 {svc['run_p95']:.1f}) per stage slot [{svc['stages']} stages, runs {svc['statuses']}]",
            flush=True,
        )
    print(f"took {time.perf_counter() - started:.0f} s")

    def row(label: str, fig: dict | None, target: str) -> str:
        if fig is None:
            return f"| {label} | not measured (--skip-services) | | | {target} |"
        return (
            f"| {label} | {fig['stage_mean']:.1f} / {fig['stage_p95']:.1f} | {fig['run_mean']:.1f} / "
            f"{fig['run_p95']:.1f} | {fig['stage_wall_mean']:.1f} | {target} |"
        )

    body = f"""
## (c) per-stage orchestration overhead at latency 0

`uv run python -m bench.overhead --runs {args.runs}{" --skip-services" if args.skip_services else ""}` on {machine()}
({args.runs} measured runs per mode after one warm-up run; offline backend at 0 ms).

| mode | in-stage overhead, mean / p95 (ms) | whole-run overhead per stage slot, mean / p95 (ms) | stage wall mean (ms) | target |
|---|---|---|---|---|
{row("embedded (SQLite, in-process)", emb, "<= 5 ms")}
{row("services (PostgreSQL + Redis + 1 Celery worker)", svc, "p95 <= 20 ms")}

In-stage overhead: a stage's started_at -> finished_at minus the time inside its provider
calls (claiming, prompts, validation, quorum, event and LLM-call rows, artifact files).
Whole-run overhead per slot: the run's created_at -> finished_at minus the time inside all
its calls, divided by the 8 stage slots of its critical chain (dispatch, broker round
trips and claims between stages included).
"""
    if not args.no_write:
        doc_section_write("overhead", body)
        print("wrote the overhead section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
