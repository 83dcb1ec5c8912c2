"""The Django side of the benchmarks: runs in a subprocess whose environment picks the mode.

    python -m bench._child embedded-run --goal G --repo R [--schedule sequential] [--model M]
        create a run (no dispatch; --model puts M in every role), optionally switch its
        schedule, execute it in this process with runs.dispatch.run_inline (what the CLI
        does in embedded mode) and print {"run_id", "wall_s", its tokens and cost}.
    python -m bench._child create-runs --goal G --repo R -n N
        create N runs and dispatch them (services mode: Celery messages); print the ids.
    python -m bench._child find-run GOAL
        print {"run_id"} of the newest run with exactly that goal (null if none).
    python -m bench._child dump RUN_ID...
        print the timings of runs, their stages and LLM calls as JSON (epoch seconds).

Output is one JSON document on stdout; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tekton_site.settings")
    import django

    django.setup()


def _ts(value) -> float | None:
    return value.timestamp() if value is not None else None


class _StatementCounter:
    """Counts the SQL statements every thread of this process sends while it is on (the
    engine's recording thread and the inline pool have connections of their own, so a
    per-connection execute_wrapper would miss theirs). An executemany is one statement."""

    def __init__(self) -> None:
        import threading

        self.n = 0
        self._lock = threading.Lock()

    def __enter__(self) -> _StatementCounter:
        from django.db.backends.utils import CursorWrapper

        self._saved = (CursorWrapper._execute, CursorWrapper._executemany)
        execute, executemany = self._saved
        counter = self

        def counted_execute(cursor, *args, **kwargs):
            with counter._lock:
                counter.n += 1
            return execute(cursor, *args, **kwargs)

        def counted_executemany(cursor, *args, **kwargs):
            with counter._lock:
                counter.n += 1
            return executemany(cursor, *args, **kwargs)

        CursorWrapper._execute, CursorWrapper._executemany = counted_execute, counted_executemany
        return self

    def __exit__(self, *exc) -> None:
        from django.db.backends.utils import CursorWrapper

        CursorWrapper._execute, CursorWrapper._executemany = self._saved


def embedded_run(
    goal: str,
    repo: str,
    schedule: str | None,
    config: str | None = None,
    model: str | None = None,
) -> dict:
    from django.db import transaction

    from runs.dispatch import run_inline
    from runs.models import Run
    from runs.services import run_create

    started = time.perf_counter()
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    counter = _StatementCounter().__enter__()
    with transaction.atomic():
        run = run_create(goal=goal, repo_path=repo, dispatch=False, model=model)
        if schedule:
            # The predecessor's schedule: a run config key execution honours when present.
            run.config = {**run.config, "schedule": schedule}
            run.save(update_fields=["config"])
        if config:
            # Other frozen run settings a benchmark compares (tool_grants, ...).
            run.config = {**run.config, **json.loads(config)}
            run.save(update_fields=["config"])
    run_inline(run.pk)
    wall = time.perf_counter() - started
    counter.__exit__()
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    kids_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = Run.objects.get(pk=run.pk)
    return {
        "run_id": run.pk,
        "wall_s": wall,
        # CPU of this process (every thread) and of its finished subprocesses (git,
        # bubblewrap, the tests) while the run was created and executed.
        "cpu_s": own_after.ru_utime + own_after.ru_stime - own.ru_utime - own.ru_stime,
        "child_cpu_s": kids_after.ru_utime + kids_after.ru_stime - kids.ru_utime - kids.ru_stime,
        # SQL statements of every thread, creating the run included (savepoints count).
        "statements": counter.n,
        "status": run.status,
        "input_tokens": run.input_tokens,
        "cached_input_tokens": run.cached_input_tokens,
        "cache_write_tokens": run.cache_write_tokens,
        "output_tokens": run.output_tokens,
        "cost_usd": float(run.cost_usd),
        "llm_calls": run.llm_calls.count(),
        "uncached_by_call": _uncached_by_call(run),
    }


def _uncached_by_call(run) -> dict[str, int]:
    """The input tokens billed in full, by the kind of call that sent them."""
    from runs.models import uncached_input_tokens

    out = {"opening round": 0, "debate rounds": 0, "mediator": 0}
    for c in run.llm_calls.all():
        kind = "mediator" if c.role == "mediator" else "opening round" if c.round == 0 else None
        out[kind or "debate rounds"] += uncached_input_tokens(c)
    return out


def create_runs(goal: str, repo: str, n: int, config: str | None = None) -> dict:
    from django.db import transaction

    from runs.services import run_create

    started = time.time()
    ids = []
    for i in range(n):
        with transaction.atomic():
            # Dispatch happens on commit, so a config merged here is what the worker reads.
            run = run_create(goal=f"{goal} #{i + 1}", repo_path=repo)
            if config:
                run.config = {**run.config, **json.loads(config)}
                run.save(update_fields=["config"])
        ids.append(run.pk)
    return {"run_ids": ids, "created_s": time.time() - started, "started_at": started}


def find_run(goal: str) -> dict:
    from runs.models import Run

    run = Run.objects.filter(goal=goal).order_by("-pk").first()
    return {"run_id": run.pk if run else None}


def dump(run_ids: list[int]) -> dict:
    from runs.models import LlmCall, Run, StageRun

    runs = []
    for run in Run.objects.filter(pk__in=run_ids).order_by("pk"):
        stages = [
            {
                "stage": s.stage,
                "status": s.status,
                "attempt": s.attempt,
                "worker": s.worker,
                "started_at": _ts(s.started_at),
                "finished_at": _ts(s.finished_at),
            }
            for s in StageRun.objects.filter(run=run).order_by("position")
        ]
        calls = [
            {
                "stage": c.stage,
                "role": c.role,
                "round": c.round,
                "attempt": c.attempt,
                "latency_ms": c.latency_ms,
                "created_at": _ts(c.created_at),
            }
            for c in LlmCall.objects.filter(run=run).order_by("pk")
        ]
        runs.append(
            {
                "run_id": run.pk,
                "status": run.status,
                "reason": run.reason,
                "config_schedule": run.config.get("schedule"),
                "rounds": run.config.get("rounds"),
                "consensus_free": run.config.get("consensus_free") or [],
                "created_at": _ts(run.created_at),
                "started_at": _ts(run.started_at),
                "finished_at": _ts(run.finished_at),
                "stages": stages,
                "calls": calls,
            }
        )
    return {"runs": runs}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench._child")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("embedded-run")
    p.add_argument("--goal", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--schedule", default=None)
    p.add_argument("--config", default=None, help="JSON merged into the run's config")
    p.add_argument("--model", default=None, help="one model for every role of every stage")
    p = sub.add_parser("create-runs")
    p.add_argument("--goal", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("-n", type=int, required=True)
    p.add_argument("--config", default=None, help="JSON merged into each run's config")
    p = sub.add_parser("find-run")
    p.add_argument("goal")
    p = sub.add_parser("dump")
    p.add_argument("run_ids", type=int, nargs="+")
    args = parser.parse_args(argv)
    _setup()
    if args.cmd == "embedded-run":
        result = embedded_run(args.goal, args.repo, args.schedule, args.config, args.model)
    elif args.cmd == "create-runs":
        result = create_runs(args.goal, args.repo, args.n, args.config)
    elif args.cmd == "find-run":
        result = find_run(args.goal)
    else:
        result = dump(args.run_ids)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
