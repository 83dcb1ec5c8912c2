"""Issue 8, section 8: what repository work (agents reading the code with tools, file
contents in the prompts) changes in a full offline run's wall time and tokens.

    uv run python -m bench.repo_work [--runs 3] [--no-write]

Embedded mode (SQLite, in-process, the offline backend at latency 0) over the same small
repository, alternating two settings run by run after one warm-up each:
- "no tools": every stage and role granted no tool (no read_file/search/run_tests);
- "tools": the default grants (the offline backend reads the files its backlog names).
Both keep the workspace, the sandboxed test runs and the file contents the code stage is
given. Tokens are the run's own totals; the offline backend counts them as the vendors
would (characters / 4), so the figure is the prompt growth, not a price.
"""

from __future__ import annotations

import argparse
import json
import statistics

from bench.common import EmbeddedEnv, child, doc_section_write, machine
from swarm.stages import STAGE_NAMES
from swarm.tools import ROLES

# An empty table would mean "the defaults" (swarm.tools.tool_grants_check fills what a
# table leaves out): no tools is every stage and role granted an empty list.
MODES = {
    "no tools": {"tool_grants": {stage: {role: [] for role in ROLES} for stage in STAGE_NAMES}},
    "tools": {},
}


def measure(runs: int) -> dict[str, list[dict]]:
    env = EmbeddedEnv.create(latency_ms=0)
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for i in range(runs + 1):  # the first round warms the process' caches up
        for mode, config in MODES.items():
            out = child(
                [
                    "embedded-run",
                    "--goal",
                    f"Document the add function in README ({mode} {i})",
                    "--repo",
                    str(env.repo),
                    "--config",
                    json.dumps(config),
                ],
                env=env.env,
            )
            if i:
                results[mode].append(out)
    return results


def report(results: dict[str, list[dict]]) -> str:
    rows = []
    med = {}
    for mode, outs in results.items():
        wall = statistics.median(o["wall_s"] for o in outs)
        tokens = statistics.median(o["input_tokens"] + o["output_tokens"] for o in outs)
        statuses = ", ".join(sorted({o["status"] for o in outs}))
        med[mode] = (wall, tokens)
        rows.append(f"| {mode} | {wall:.2f} | {tokens:,.0f} | {statuses} |")
    wall_ratio = med["tools"][0] / med["no tools"][0]
    token_ratio = med["tools"][1] / med["no tools"][1]
    return "\n".join(
        [
            "## Repository work in a full offline run (issue 8, section 8)",
            "",
            f"`uv run python -m bench.repo_work --runs {len(results['tools'])}` on {machine()};",
            "embedded mode, offline backend at latency 0, the same small repository; medians.",
            "",
            "| run | wall (s) | tokens in+out | status |",
            "|---|---:|---:|---|",
            *rows,
            "",
            f"**Tools change a full run's wall time {wall_ratio:.2f}x and its tokens "
            f"{token_ratio:.2f}x.** Most of a run's wall time here is the workspace and the "
            "sandboxed test runs (base and branch), which both settings pay.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.repo_work")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    body = report(measure(args.runs))
    print(body)
    if not args.no_write:
        doc_section_write("repo_work", body)


if __name__ == "__main__":
    main()
