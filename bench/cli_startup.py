"""Issue 7, section 4: how long the command line takes to start.

    uv run python -m bench.cli_startup [--repeat 7] [--compare DIR] [--save FILE] [--before FILE]...
        [--no-write]

Embedded mode: a throwaway TEKTON_DATA_DIR holding a migrated SQLite database with a few
finished runs (offline backend, latency 0). Each command runs in a fresh
`python manage.py ...` subprocess, `--repeat` times after one warm-up (so the page cache
holds the files), the commands taking turns; the figures are the medians of the wall
time (start to exit) and of the child's CPU time (user + system, from getrusage of the
children), with the 1-minute load average seen meanwhile. Nothing is asserted.

`--compare DIR` measures another checkout too (a `git worktree add DIR REV` of the revision
before a change), in the same turns and on the same data, so both see the same load: the
fairest before/after. `--save FILE` writes the figures as JSON; `--before FILE`
(repeatable) shows such files' figures beside the new ones (what the change replaced).
The before figures are kept in the section (a JSON comment) so that a later run without
`--before` or `--compare` still shows them.
Each set of figures says whether the installed packages carried compiled bytecode: with
PYTHONDONTWRITEBYTECODE set and none compiled, every start compiles them again, which
costs more than everything else together. The project's own modules are compiled before
measuring (compileall), as a first start without that variable leaves them.
Targets: `runs`, `show`, `--help` <= 0.5 s and `run --explain` <= 1 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import DOC_PATH, EmbeddedEnv, child, doc_section_write, machine
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


def timed(argv: list[str], env: dict[str, str], project: Path = PROJECT_DIR) -> tuple[float, float]:
    """(wall s, cpu s) of one `PROJECT/manage.py ARGV` subprocess; raises when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(project / MANAGE_PY.name), *argv],
        cwd=project,
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


def measure(repeat: int, projects: list[Path]) -> list[dict]:
    """The figures of each checkout in `projects` (the first is this one), measured in the
    same turns against the same data directory."""
    env = EmbeddedEnv.create(latency_ms=0)
    try:
        run_ids = [
            child(
                ["embedded-run", "--goal", f"cli start-up {i}", "--repo", str(env.repo)],
                env=env.env,
            )["run_id"]
            for i in range(RUNS)
        ]
        argvs = {key: _argv(key, run_id=run_ids[-1], repo=str(env.repo)) for key, _, _ in COMMANDS}
        for project in projects:
            _project_compile(project)
            for argv in argvs.values():
                timed(argv, env.env, project)  # warm-up
        # Round robin, so a change in the machine's load touches every command alike.
        load = [os.getloadavg()[0]]
        samples = {(p, key): [] for p in projects for key in argvs}
        for _ in range(repeat):
            for key, argv in argvs.items():
                for project in projects:
                    samples[project, key].append(timed(argv, env.env, project))
            load.append(os.getloadavg()[0])
    finally:
        env.close()
    results = []
    for project in projects:
        figures = {}
        for key, _, _ in COMMANDS:
            runs = samples[project, key]
            figures[key] = {
                "wall_s": statistics.median(w for w, _ in runs),
                "cpu_s": statistics.median(c for _, c in runs),
                "cpu_min_s": min(c for _, c in runs),
            }
        results.append(
            {
                "label": _revision(project),
                "repeat": repeat,
                "runs": RUNS,
                "bytecode": _site_packages_compiled(),
                "dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
                "load": [round(min(load), 2), round(max(load), 2)],
                "figures": figures,
            }
        )
    return results


def _project_compile(project: Path) -> None:
    """Compile the project's own modules, as any start without PYTHONDONTWRITEBYTECODE
    leaves them: with it set (as here), every start would compile them from source again,
    a cost no installed Tekton pays."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", "-x", r"/(\.venv|var|node_modules)/",
         str(project)],
        check=True,
        capture_output=True,
    )  # fmt: skip


def _site_packages_compiled() -> bool:
    """Whether the installed packages carry compiled bytecode (`uv sync --compile-bytecode`);
    without it, and with PYTHONDONTWRITEBYTECODE set, every start compiles them again."""
    import django

    return Path(importlib.util.cache_from_source(django.__file__)).exists()


def _revision(project: Path) -> str:
    proc = subprocess.run(
        ["git", "log", "-1", "--format=%h %cs"], cwd=project, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=project,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return proc.stdout.strip() + (" + local changes" if dirty else "")


def _title(figures: dict) -> str:
    compiled = "bytecode compiled" if figures.get("bytecode") else "no bytecode"
    same = ", in the same turns" if figures.get("alongside") else ""
    return f"{figures['label']}, {compiled}{same}"


def _before_from_doc() -> list[dict]:
    if not DOC_PATH.exists():
        return []
    found = re.search(r"<!-- cli_startup before: (\[.*?\]) -->", DOC_PATH.read_text())
    return json.loads(found.group(1)) if found else []


def _load(figures: dict) -> str:
    low, high = figures["load"]
    return f"{low:.1f}" if round(low, 1) == round(high, 1) else f"{low:.1f} to {high:.1f}"


def _cell(fig: dict | None) -> str:
    if fig is None:
        return "-"
    return f"{fig['wall_s']:.2f} s / {fig['cpu_s']:.2f} s"


def render(after: dict, before: list[dict], argv_line: str) -> str:
    lines = [
        "## CLI start-up (issue 7, section 4)",
        "",
        f"`{argv_line}` on {machine()}; embedded mode (SQLite with {after['runs']} finished "
        f"runs), each command in a fresh `manage.py` process, median of {after['repeat']} after "
        "a warm-up. Wall time is start to exit; CPU is the process's user + system time, "
        "which other load on the machine disturbs less (1-minute load average while measuring: "
        f"{_load(after)} on {os.cpu_count()} cores; the commands take turns, so a change in load "
        "touches them alike). The least CPU time of the runs is the closest figure to an idle "
        "machine's. Targets are wall times.",
        "",
        "| command | "
        + "".join(f"before ({_title(b)}), wall / CPU | " for b in before)
        + f"now ({_title(after)}), wall / CPU | now, least CPU | target |",
        "|---|" + "---|" * (len(before) + 3),
    ]
    for key, label, target in COMMANDS:
        cells = [_cell(b["figures"].get(key)) for b in before]
        cells.append(f"**{_cell(after['figures'][key])}**")
        cells.append(f"{after['figures'][key]['cpu_min_s']:.2f} s")
        lines.append(f"| `{label}` | " + " | ".join(cells) + f" | <= {target:g} s |")
    if before:
        lines += ["", f"<!-- cli_startup before: {json.dumps(before, sort_keys=True)} -->"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--save", default=None, help="Write the figures to this JSON file.")
    parser.add_argument(
        "--before",
        action="append",
        default=[],
        help="Earlier figures (a --save file) to show beside; repeatable.",
    )
    parser.add_argument(
        "--compare",
        default=None,
        help="Another checkout (e.g. a git worktree of the revision before a change) to measure "
        "in the same turns; shown as a before column.",
    )
    parser.add_argument("--no-write", action="store_true", help="Do not touch docs/benchmarks.md.")
    args = parser.parse_args()
    projects = [PROJECT_DIR] + ([Path(args.compare).resolve()] if args.compare else [])
    after, *alongside = measure(args.repeat, projects)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    for figures in (after, *alongside):
        figures["measured_at"] = stamp
    for figures in alongside:
        figures["alongside"] = True
    if args.save:
        with open(args.save, "w") as out:
            json.dump(after, out, indent=2)
    before = []
    for path in args.before:
        with open(path) as src:
            before.append(json.load(src))
    if not args.before and not alongside:
        before = _before_from_doc()
    before += alongside
    print()
    for key, label, target in COMMANDS:
        was = "".join(f"   before ({_title(b)}) {_cell(b['figures'].get(key))}" for b in before)
        print(f"{label:<45} {_cell(after['figures'][key])}   target <= {target:g} s{was}")
    if not args.no_write:
        argv_line = "uv run python -m bench.cli_startup" + (
            f" --repeat {args.repeat}" if args.repeat != 7 else ""
        )
        doc_section_write(SECTION, render(after, before, argv_line))
        print(f"wrote the {SECTION} section of {DOC_PATH.relative_to(PROJECT_DIR)}")


if __name__ == "__main__":
    main()
