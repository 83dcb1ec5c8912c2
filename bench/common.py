"""Shared pieces of the benchmarks: environments, the Django child process, statistics and
the docs/benchmarks.md section writer. Figures are printed, never asserted."""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from swarm.stages import STAGE_NAMES, stage_dependencies
from tests.integration.harness import PROJECT_DIR, make_git_repo, manage

DOC_PATH = PROJECT_DIR / "docs" / "benchmarks.md"


@dataclass
class EmbeddedEnv:
    """A throwaway embedded-mode installation: SQLite in a temp data dir, inline execution."""

    root: Path
    env: dict[str, str]
    repo: Path

    @classmethod
    def create(cls, *, latency_ms: int) -> EmbeddedEnv:
        root = Path(tempfile.mkdtemp(prefix="tekton-bench-"))
        repo_root = root / "repos"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TEKTON_", "CELERY_", "DJANGO_"))
            and k not in ("DATABASE_URL", "REDIS_URL")
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "tekton_site.settings",
                "TEKTON_DATA_DIR": str(root / "data"),
                "TEKTON_REPO_ROOTS": str(repo_root),
                "TEKTON_LLM_BACKEND": "offline",
                "TEKTON_OFFLINE_LATENCY_MS": str(latency_ms),
                "TEKTON_LOG_LEVEL": "WARNING",
            }
        )
        repo = make_git_repo(repo_root / "sample")
        proc = manage(["migrate", "--noinput"], env=env, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{proc.stdout}\n{proc.stderr}")
        made = cls(root=root, env=env, repo=repo)
        # A run with retrieval starts milvus-lite's own server under the data dir, which
        # outlives the run by design; a throwaway installation must not leave it behind.
        atexit.register(made.close)
        return made

    def close(self) -> None:
        """Stop this installation's on-demand milvus-lite server and remove its files."""
        from swarm.retrieval.server import local_server_stop

        with contextlib.suppress(Exception):
            local_server_stop(self.root / "data" / "milvus")
        shutil.rmtree(self.root, ignore_errors=True)


def child(args: list[str], *, env: Mapping[str, str], timeout: float = 1800) -> dict:
    """Run `python -m bench._child ARGS` and return the JSON it prints."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench._child", *args],
        cwd=PROJECT_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"bench._child {args[0]} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def dump_runs(run_ids: Iterable[int], *, env: Mapping[str, str]) -> list[dict]:
    return child(["dump", *map(str, run_ids)], env=env)["runs"]


# --- figures ---------------------------------------------------------------------------


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def final_calls(run: dict) -> list[dict]:
    """The LLM calls of each stage's final attempt (a re-run stage's first try excluded)."""
    attempt = {s["stage"]: s["attempt"] for s in run["stages"]}
    return [c for c in run["calls"] if c["attempt"] == attempt.get(c["stage"])]


def stage_steps(run: dict) -> dict[str, int]:
    """Sequential LLM steps per stage, counted from the run's own calls: one per debate
    round (its calls run side by side) plus each extra call of the mediator's round
    (a repair follows the first answer)."""
    steps: dict[str, int] = {}
    by_stage: dict[str, dict[int, list[dict]]] = {}
    for call in final_calls(run):
        by_stage.setdefault(call["stage"], {}).setdefault(call["round"], []).append(call)
    for stage, rounds in by_stage.items():
        n = 0
        for calls in rounds.values():
            mediator = sum(1 for c in calls if c["role"] == "mediator")
            n += (1 if len(calls) > mediator else 0) + mediator
        steps[stage] = n
    return steps


def critical_path_steps(run: dict) -> tuple[int, list[str]]:
    """Longest chain of sequential LLM steps through the stage dependency graph."""
    steps = stage_steps(run)
    selected = [s["stage"] for s in run["stages"]]
    best: dict[str, tuple[int, list[str]]] = {}
    for stage in STAGE_NAMES:
        if stage not in selected:
            continue
        deps = stage_dependencies(stage, selected)
        before = max((best[d] for d in deps), default=(0, []), key=lambda t: t[0])
        best[stage] = (before[0] + steps.get(stage, 0), [*before[1], stage])
    return max(best.values(), key=lambda t: t[0]) if best else (0, [])


def provider_time_s(calls: list[dict]) -> float:
    """Wall time spent inside provider calls: the union of [created_at - latency, created_at]."""
    spans = sorted((c["created_at"] - c["latency_ms"] / 1000, c["created_at"]) for c in calls)
    total, cur_start, cur_end = 0.0, None, None
    for start, end in spans:
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant."""
    points = sorted(
        [(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda p: (p[0], p[1])
    )
    best = cur = 0
    for _, delta in points:
        cur += delta
        best = max(best, cur)
    return best


def machine() -> str:
    cpus = os.cpu_count()
    return f"{platform.system()} {platform.machine()}, {cpus} cores, Python {platform.python_version()}"


# --- docs/benchmarks.md -----------------------------------------------------------------

_DOC_HEADER = """# Benchmarks

Produced by the scripts in `bench/` (see `bench/README.md`); each script rewrites only its
own section below. The figures are measured, never asserted in tests.
"""


def doc_section_write(name: str, body: str) -> None:
    """Replace the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` (append the
    section when the markers are missing)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = DOC_PATH.read_text() if DOC_PATH.exists() else _DOC_HEADER
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text)


METRICS_TOKEN = "bench-metrics-token"  # set on the bench's daphne (TEKTON_METRICS_TOKEN)


def streams_live_wait(base_url: str, n: int, *, timeout: float = 300.0) -> float:
    """Wait until the server's hub has `n` live subscribers (its /metrics gauge
    tekton_event_stream_subscribers, which counts streams subscribed to the layer) and
    return the seconds waited. A client has its response headers before its stream is
    subscribed, and under load that gap is seconds: what was published meanwhile reached
    no one (deltas) or came by replay (events), and counted as lost or late."""
    import re
    import time

    import httpx

    gauge = re.compile(r"^tekton_event_stream_subscribers (\S+)$", re.M)
    started = time.monotonic()
    seen = 0.0
    while time.monotonic() - started < timeout:
        answer = httpx.get(
            f"{base_url}/metrics",
            headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
            timeout=30,
        )
        answer.raise_for_status()
        found = gauge.search(answer.text)
        seen = float(found.group(1)) if found else 0.0
        if seen >= n:
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"{seen:.0f} of {n} streams live after {timeout:.0f} s")
