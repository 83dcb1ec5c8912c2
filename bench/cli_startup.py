"""Issue 7, section 4: how long the command line takes to start.

    uv run python -m bench.cli_startup [--repeat 7] [--save FILE] [--before FILE] [--no-write]

Embedded mode: a throwaway TEKTON_DATA_DIR holding a migrated SQLite database with a few
finished runs (offline backend, latency 0). Each command runs in a fresh
`python manage.py ...` subprocess, `--repeat` times after one warm-up (so the page cache
holds the files); the figures are the medians of the wall time (start to exit) and of
the child's CPU time (user + system, from getrusage of the children). Nothing is asserted.

`--save FILE` writes the figures as JSON; `--before FILE` shows such a file's figures
beside the new ones (what the change replaced). The before figures are kept in the
section (a JSON comment) so that a later run without `--before` still shows them.
Targets: `runs`, `show`, `--help` <= 0.5 s and `run --explain` <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

from bench.common import DOC_PATH, EmbeddedEnv, child, machine
from tests.integration.harness import MANAGE_PY, PROJECT_DIR

SECTION = "cli_startup"
RUNS = 3
# (key, what the table shows, target in seconds or None)
COMMANDS = [
    ("help", "manage.py help", 0.5),
    ("tekton_help", "manage.py tekton --help", 0.5),
    ("runs", "manage.py tekton runs", 0.5),
    ("show", "manage.py tekton show ID", 0.5),
    ("explain", "manage.py tekton run --goal ... --explain", 1.0),
]


def _argv(key: str, *, run_id: int, repo: str) -> list[str]:
    return {
        "help": ["help"],
        "tekton_help": ["tekton", "--help"],
        "runs": ["tekton", "runs"],
        "show": ["tekton", "show", str(run_id)],
        "explain": [
            "tekton",
            "run",
            "--goal",
            "Add a health endpoint",
            "--repo",
            repo,
            "--explain",
        ],
    }[key]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, cpu s) of one `manage.py ARGV` subprocess; raises when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(MANAGE_PY), *argv],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(repeat: int) -> dict:
    env = EmbeddedEnv.create(latency_ms=0)
    try:
        run_ids = [
            child(
                ["embedded-run", "--goal", f"cli start-up {i}", "--repo", str(env.repo)],
                env=env.env,
            )["run_id"]
            for i in range(RUNS)
        ]
        figures = {}
        for key, label, _ in COMMANDS:
            argv = _argv(key, run_id=run_ids[-1], repo=str(env.repo))
            timed(argv, env.env)  # warm-up
            samples = [timed(argv, env.env) for _ in range(repeat)]
            figures[key] = {
                "wall_s": statistics.median(s[0] for s in samples),
                "cpu_s": statistics.median(s[1] for s in samples),
            }
            print(
                f"{label:<45} wall {figures[key]['wall_s']:.2f} s  cpu {figures[key]['cpu_s']:.2f} s",
                flush=True,
            )
    finally:
        shutil.rmtree(env.root, ignore_errors=True)
    return {"label": _revision(), "repeat": repeat, "runs": RUNS, "figures": figures}


def _revision() -> str:
    proc = subprocess.run(
        ["git", "log", "-1", "--format=%h %cs"], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return proc.stdout.strip() + (" + local changes" if dirty else "")


def _before_from_doc() -> dict | None:
    if not DOC_PATH.exists():
        return None
    found = re.search(r"<!-- cli_startup before: (\{.*?\}) -->", DOC_PATH.read_text())
    return json.loads(found.group(1)) if found else None


def _cell(fig: dict | None) -> str:
    if fig is None:
        return "-"
    return f"{fig['wall_s']:.2f} s / {fig['cpu_s']:.2f} s"


def render(after: dict, before: dict | None, argv_line: str) -> str:
    lines = [
        "## CLI start-up (issue 7, section 4)",
        "",
        f"`{argv_line}` on {machine()}; embedded mode (SQLite with {after['runs']} finished "
        f"runs), each command in a fresh subprocess, median of {after['repeat']} after a "
        "warm-up. Wall time is start to exit; CPU is the child's user + system time.",
        "",
    ]
    if before is not None:
        lines += [
            f"| command | before ({before['label']}), wall / CPU | now, wall / CPU | target (wall) |",
            "|---|---|---|---|",
        ]
    else:
        lines += ["| command | wall / CPU | target (wall) |", "|---|---|---|"]
    for key, label, target in COMMANDS:
        now = f"**{_cell(after['figures'][key])}**"
        goal = f"<= {target:g} s"
        if before is not None:
            lines.append(f"| `{label}` | {_cell(before['figures'].get(key))} | {now} | {goal} |")
        else:
            lines.append(f"| `{label}` | {now} | {goal} |")
    lines += ["", f"Measured at {after['label']}."]
    if before is not None:
        lines += ["", f"<!-- cli_startup before: {json.dumps(before, sort_keys=True)} -->"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--save", default=None, help="Write the figures to this JSON file.")
    parser.add_argument("--before", default=None, help="Earlier figures (a --save file).")
    parser.add_argument("--no-write", action="store_true", help="Do not touch docs/benchmarks.md.")
    args = parser.parse_args()
    after = measure(args.repeat)
    after["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if args.save:
        with open(args.save, "w") as out:
            json.dump(after, out, indent=2)
    before = None
    if args.before:
        with open(args.before) as src:
            before = json.load(src)
    else:
        before = _before_from_doc()
    print()
    for key, label, target in COMMANDS:
        was = before["figures"].get(key) if before else None
        was_text = f"   before {_cell(was)}" if was else ""
        print(f"{label:<45} {_cell(after['figures'][key])}   target <= {target:g} s{was_text}")
    if not args.no_write:
        from bench.common import doc_section_write

        argv_line = "uv run python -m bench.cli_startup" + (
            f" --repeat {args.repeat}" if args.repeat != 7 else ""
        )
        doc_section_write(SECTION, render(after, before, argv_line))
        print(f"wrote the {SECTION} section of {DOC_PATH.relative_to(PROJECT_DIR)}")


if __name__ == "__main__":
    main()
