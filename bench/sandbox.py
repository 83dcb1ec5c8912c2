"""Issue 8, section 8: the sandbox's overhead on a test run.

    uv run python -m bench.sandbox [--runs 7] [--tests 50] [--no-write]

A fixture Python package with `--tests` pytest tests is run with this project's own venv
interpreter, the same shell command each time: bare (a plain subprocess with the sandbox's
environment) and through `swarm.sandbox.Sandbox` (bwrap: namespaces, toolchain-only root,
the venv read-only, limits). The two are interleaved so machine load hits both alike; the
figure is the ratio of the medians. Target: <= 1.10x.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import doc_section_write, machine
from swarm.sandbox import Sandbox, sandbox_env, sandbox_probe
from swarm.testing import test_command_resolve


def make_fixture(root: Path, tests: int) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'bench-fixture'\nversion = '0'\n")
    (root / "pkg" / "__init__.py").write_text(
        "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
    )
    body = ["import pytest\n\nfrom pkg import fib\n"]
    for i in range(tests):
        body.append(f"\n\ndef test_fib_{i}():\n    assert fib({i % 30}) >= 0\n")
    (root / "tests" / "test_fib.py").write_text("".join(body))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tests", type=int, default=50)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    ok, why = sandbox_probe()
    if not ok:
        sys.exit(f"sandbox unavailable: {why}")
    with tempfile.TemporaryDirectory(prefix="tekton-bench-sbx-") as tmp:
        repo = make_fixture(Path(tmp) / "repo", args.tests)
        command = test_command_resolve(repo, None, venv=Path(sys.prefix))
        # The fixture uses no plugins; this project's venv has many, whose import time
        # would only dilute the figure.
        env_extra = {**command.env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        line = command.command.replace("/tmp/tekton-test-out", f"{tmp}/out")
        Path(tmp, "out").mkdir()
        box = Sandbox(
            workspace=repo,
            readonly=[Path(p) for p in command.readonly],
            env=env_extra,
            writable=[Path(tmp, "out")],
        )
        bare_env, _ = sandbox_env(env_extra, home=f"{tmp}/home", tmp=tmp)
        Path(tmp, "home").mkdir()
        bare, boxed = [], []
        for i in range(args.runs + 1):
            t = time.perf_counter()
            proc = subprocess.run(
                ["/bin/sh", "-c", line], cwd=repo, env=bare_env, capture_output=True
            )
            bare_s = time.perf_counter() - t
            t = time.perf_counter()
            result = box.run(["/bin/sh", "-c", line])
            boxed_s = time.perf_counter() - t
            if proc.returncode != 0 or result.exit_code != 0:
                sys.exit(f"fixture run failed: bare {proc.returncode}, sandbox {result.exit_code}")
            if i:  # the first pair warms the page cache
                bare.append(bare_s)
                boxed.append(boxed_s)
    bare_med, box_med = statistics.median(bare), statistics.median(boxed)
    ratio = box_med / bare_med
    print(
        f"bare    median {bare_med * 1000:.0f} ms  ({', '.join(f'{x * 1000:.0f}' for x in bare)})"
    )
    print(
        f"sandbox median {box_med * 1000:.0f} ms  ({', '.join(f'{x * 1000:.0f}' for x in boxed)})"
    )
    print(f"overhead {ratio:.3f}x ({(box_med - bare_med) * 1000:+.0f} ms), target <= 1.10x")
    body = f"""## Sandbox overhead on a test run (issue 8, section 8)

`uv run python -m bench.sandbox --runs {args.runs} --tests {args.tests}` on {machine()}.
A fixture package with {args.tests} pytest tests (pytest under `coverage run`, JUnit XML
written), the same command bare and through the bubblewrap sandbox, interleaved; medians
of {args.runs} runs after one warm-up pair.

| | median | runs (ms) |
|---|---|---|
| bare | {bare_med * 1000:.0f} ms | {", ".join(f"{x * 1000:.0f}" for x in bare)} |
| sandbox (bwrap) | {box_med * 1000:.0f} ms | {", ".join(f"{x * 1000:.0f}" for x in boxed)} |

**Overhead: {ratio:.3f}x** ({(box_med - bare_med) * 1000:+.0f} ms per run; target <= 1.10x).
The sandbox's fixed cost is the namespaces and mounts (tens of milliseconds) plus, as root,
handing the workspace to the sandbox uid."""
    if not args.no_write:
        doc_section_write("sandbox", body)
        print("docs/benchmarks.md: section sandbox written")


if __name__ == "__main__":
    main()
