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

Two profiles (issue 14, section 1), each run in its own installation:
- "bare": what the issue-2 figures measured: retrieval off (TEKTON_RETRIEVAL=false), no
  tools for any role (every grant empty, no run_tests), and test_debug's tests a no-op
  (`.tekton.toml` names an `echo` of a one-test JUnit report, run with TEKTON_SANDBOX=none: no bubblewrap, no pytest);
- "defaults": the default profile and settings (tools, sandboxed pytest, retrieval).
CPU seconds per full run: embedded, the run's process (all its threads) plus its finished
subprocesses (git, bubblewrap, pytest); services, the Celery worker's own CPU (from
/proc/PID/stat, threads included) plus its reaped subprocesses, per run. The on-demand
retrieval server (a process of its own) is not counted in either.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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
PROFILES = ("bare", "defaults")
_BARE_ENV = {"TEKTON_RETRIEVAL": "false", "TEKTON_SANDBOX": "none"}


def _bare_config() -> dict:
    from swarm.stages import ROLES, STAGE_NAMES

    # Every (stage, role) named with no tools: an empty table would mean the defaults.
    return {
        "tool_grants": {stage: {role: [] for role in ROLES} for stage in STAGE_NAMES},
        "max_test_runs": 0,
    }


def _bare_repo(repo: Path) -> None:
    """test_debug's tests become a no-op (an echo) the repository itself names."""
    # One passing test in a JUnit report, so test_debug has evidence and the run ships.
    (repo / ".tekton.toml").write_text(
        "[tests]\n"
        'command = "echo \'<testsuite name=\\"bench\\" tests=\\"1\\">'
        '<testcase classname=\\"bench\\" name=\\"noop\\"/></testsuite>\' > .bench-junit.xml"\n'
        'junit = ".bench-junit.xml"\n'
    )
    git_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Tekton bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "Tekton bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    }
    for cmd in (
        ["git", "add", ".tekton.toml"],
        ["git", "commit", "-q", "-m", "bench: no-op tests"],
    ):
        subprocess.run(cmd, cwd=repo, env=git_env, check=True, capture_output=True)


def _proc_cpu_s(pid: int) -> float:
    """utime + stime + cutime + cstime of a live process (all its threads, its reaped
    children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def overheads(
    runs: list[dict], walls: list[float], cpus: list[float], statements: list[int] | None = None
) -> dict:
    """Per-stage and per-run overheads in milliseconds; wall and CPU seconds per run; SQL
    statements per run where counted (embedded)."""
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
        if run["finished_at"] is None:
            continue  # blocked: no run-level figure (the statuses say so)
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
        "wall_s": mean(walls),
        "cpu_s": mean(cpus),
        "cpu_s_min": min(cpus) if cpus else float("nan"),
        "statements": mean(statements) if statements else None,
    }


def embedded(n: int, profile: str) -> dict:
    env = EmbeddedEnv.create(latency_ms=0)
    config: list[str] = []
    if profile == "bare":
        env.env.update(_BARE_ENV)
        _bare_repo(env.repo)
        config = ["--config", json.dumps(_bare_config())]
    # One warm-up run: the first run in an installation pays the first queries (and, with
    # the defaults, the repository's first index and base test run).
    ids, walls, cpus, statements = [], [], [], []
    for i in range(n + 1):
        result = child(
            [
                "embedded-run",
                "--goal",
                f"Add a subtract function (overhead {i})",
                "--repo",
                str(env.repo),
                *config,
            ],
            env=env.env,
        )
        ids.append(result["run_id"])
        if i:
            walls.append(result["wall_s"])
            cpus.append(result["cpu_s"] + result["child_cpu_s"])
            statements.append(result["statements"])
    return overheads(dump_runs(ids[1:], env=env.env), walls, cpus, statements)


def services(n: int, profile: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="tekton-bench-svc-"))
    svc = Services.create(
        work_dir=work,
        # Default-like lease: the benchmark measures, it does not exercise recovery.
        extra_env={
            "TEKTON_HEARTBEAT_SECONDS": "5",
            "TEKTON_STAGE_LEASE_SECONDS": "30",
            "TEKTON_LOG_LEVEL": "WARNING",
            **(_BARE_ENV if profile == "bare" else {}),
        },
    )
    config = ["--config", json.dumps(_bare_config())] if profile == "bare" else []
    worker = None
    try:
        svc.migrate()
        repo = make_git_repo(svc.repo_root / "sample")
        if profile == "bare":
            _bare_repo(repo)
        worker = Worker(
            env=svc.env,
            queue=svc.queue,
            log_path=work / "worker.log",
            extra_env={"TEKTON_OFFLINE_LATENCY_MS": "0"},
        )
        worker.wait_ready()
        ids, walls, cpus = [], [], []
        for i in range(n + 1):
            cpu_before = _proc_cpu_s(worker.pid)
            (run_id,) = child(
                [
                    "create-runs",
                    "--goal",
                    f"Add a subtract function (overhead {i})",
                    "--repo",
                    str(repo),
                    "-n",
                    "1",
                    *config,
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
            if i:
                cpus.append(_proc_cpu_s(worker.pid) - cpu_before)
        runs = dump_runs(ids[1:], env=svc.env)
        walls = [r["finished_at"] - r["created_at"] for r in runs if r["finished_at"]]
        return overheads(runs, walls, cpus)
    finally:
        if worker is not None:
            worker.stop()
        svc.close()


def _line(mode: str, profile: str, fig: dict) -> str:
    sql = f", {fig['statements']:.0f} SQL statements" if fig.get("statements") else ""
    return (
        f"(c) {mode} [{profile}]: per stage overhead mean {fig['stage_mean']:.1f} ms, "
        f"p95 {fig['stage_p95']:.1f} ms (stage wall mean {fig['stage_wall_mean']:.1f} ms); "
        f"run-level {fig['run_mean']:.1f} ms (p95 {fig['run_p95']:.1f}) per stage slot; "
        f"run wall {fig['wall_s']:.2f} s, CPU {fig['cpu_s']:.2f} s (min {fig['cpu_s_min']:.2f}){sql} "
        f"[{fig['stages']} stages, runs {fig['statuses']}]"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="measured runs per mode (default 3, plus one warm-up)"
    )
    parser.add_argument("--skip-services", action="store_true", help="embedded mode only")
    parser.add_argument(
        "--profile",
        choices=[*PROFILES, "both"],
        default="both",
        help="bare (tools, tests, retrieval off), defaults, or both (default)",
    )
    parser.add_argument("--save", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--before", type=Path, help="a --save file of earlier figures to show beside these"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone"
    )
    args = parser.parse_args(argv)
    profiles = PROFILES if args.profile == "both" else (args.profile,)
    before = json.loads(args.before.read_text()) if args.before else {}

    started = time.perf_counter()
    load = os.getloadavg()
    figures: dict[str, dict | None] = {}
    for profile in profiles:
        figures[f"embedded/{profile}"] = fig = embedded(args.runs, profile)
        print(_line("embedded", profile, fig), flush=True)
        if args.skip_services:
            figures[f"services/{profile}"] = None
            continue
        figures[f"services/{profile}"] = fig = services(args.runs, profile)
        print(_line("services", profile, fig), flush=True)
    load_end = os.getloadavg()
    took = time.perf_counter() - started
    print(
        f"took {took:.0f} s; load average {load[0]:.2f} at the start, {load_end[0]:.2f} at the end"
    )
    if args.save:
        args.save.write_text(
            json.dumps({**figures, "load": [load[0], load_end[0]]}, indent=2) + "\n"
        )

    def cells(fig: dict | None) -> str:
        if fig is None:
            return "not measured | | | |"
        return (
            f"{fig['stage_mean']:.1f} / {fig['stage_p95']:.1f} | {fig['run_mean']:.1f} / "
            f"{fig['run_p95']:.1f} | {fig['wall_s']:.2f} | {fig['cpu_s']:.2f}"
        )

    targets = {"embedded": "<= 5 ms mean", "services": "p95 <= 20 ms"}
    labels = {
        "embedded": "embedded (SQLite, in-process)",
        "services": "services (PostgreSQL + Redis + 1 Celery worker)",
    }
    rows = []
    for key, fig in figures.items():
        mode, profile = key.split("/")
        if key in before:
            rows.append(f"| {labels[mode]} | {profile} | before | {cells(before[key])} | |")
        rows.append(
            f"| {labels[mode]} | {profile} | {'after' if before else 'now'} | {cells(fig)} | {targets[mode]} |"
        )
    table = "\n".join(rows)
    before_load = (
        f" The earlier figures were taken at a load average of {before['load'][0]:.1f}."
        if before.get("load")
        else ""
    )
    body = f"""
## (c) per-stage orchestration overhead and CPU per run at latency 0

`uv run python -m bench.overhead --runs {args.runs}{" --skip-services" if args.skip_services else ""}` on {machine()}
({args.runs} measured runs per mode and profile after one warm-up run; offline backend at 0 ms;
load average {load[0]:.1f} -> {load_end[0]:.1f} from other work on the machine while measuring,
so CPU seconds are steadier than wall time).{before_load}

| mode | profile | | in-stage overhead, mean / p95 (ms) | whole-run overhead per stage slot, mean / p95 (ms) | run wall (s) | CPU per run (s) | target |
|---|---|---|---|---|---|---|---|
{table}

Profiles: **bare** turns off what issues 8-10 added to every stage (retrieval off, no
tools for any role, test_debug's tests a no-op `echo` of a one-test JUnit report, run unsandboxed), so it compares
with the issue-2 figures (embedded 33.3 / 62.9 ms, services 56.2 / 86.9 ms);
**defaults** is the default profile and settings (tools, pytest in bubblewrap, retrieval).
In-stage overhead: a stage's started_at -> finished_at minus the time inside its provider
calls (claiming, prompts, validation, quorum, event and LLM-call rows, artifact files,
and with the defaults the test runs and retrieval). Whole-run overhead per slot: the run's
created_at -> finished_at minus the time inside all its calls, divided by the stage slots
of its critical chain (dispatch, broker round trips and claims between stages included).
CPU per run: embedded, the run's process and its finished subprocesses from creating the
run to its end; services, the worker process and its finished subprocesses (the CLI
creating the run not counted); the on-demand retrieval server is counted in neither.
"""
    if not args.no_write:
        doc_section_write("overhead", body)
        print("wrote the overhead section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
