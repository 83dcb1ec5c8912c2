"""Issue 8, section 8: workspace creation time for a repository of 10,000 files.

    uv run python -m bench.workspace [--files 10000] [--repeat 5] [--dir /tmp] [--no-write]

Builds a throwaway repository of `--files` small source files (100 per folder, about 20
lines each) and times, `--repeat` times each:
- `Workspace.create()` from nothing: `git worktree add --detach` with parallel checkout
  (what a run's first stage pays); target <= 1 s;
- the same from an unchanged state right after a workspace was deleted (see below);
- the same worktree add with one checkout worker, for comparison;
- two references: one Python process writing the same files into a fresh folder on the
  same disk, and `tar -c | tar -x` copying the fresh workspace's files (no `.git`) to
  another fresh folder: what making that many files costs the file system, the floor any
  way of making a checkout from nothing (clone, copy, archive) pays;
- `create()` from the repository's spare (a finished run's worktree at the commit
  before, 20 files differ), target <= 1 s;
- `create()` again on the healthy worktree (reuse), `rebuild([patch])` from a clean
  workspace (reset + clean + apply), `rebuild` again in that state, and `remove()` with
  and without keeping the worktree as the spare.
Every operation that makes files from nothing starts cold: after a `sync` and, where
the bench may (root), with the kernel's caches dropped. On ext4 without a journal the
kernel will not hand out an inode freed in the last one to six minutes while its inode
table block is still cached (`recently_deleted()` in `find_inode_bit`), and it checks
every such inode before each new one: 10,000 new files right after 10,000 were deleted
took 2 to 9 s here, 0.3 s with the caches dropped. The "right after a deletion" row
keeps that case in view.
Figures are printed and written to the `workspace` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import doc_section_write, machine
from swarm.git import git_run
from swarm.workspace import Workspace, workspaces_prune

RUN = "tekton/run-1-bench0001"
DROP_CACHES = "/proc/sys/vm/drop_caches"
ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@tekton.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@tekton.invalid",
}


def source(i: int) -> str:
    return "".join(
        [f'"""Module {i}."""\n\n', f"VALUE = {i}\n\n\n", f"def f_{i}(x):\n"]
        + [f"    x = x + {j}  # step {j}\n" for j in range(14)]
        + ["    return x\n"]
    )


def write_tree(root: Path, files: int) -> None:
    for i in range(files):
        folder = root / f"pkg{i // 100:03}"
        if i % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"mod{i:05}.py").write_text(source(i))


def make_repo(path: Path, files: int) -> Path:
    path.mkdir(parents=True)
    write_tree(path, files)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | ENV
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    # A second commit touching 20 files: the next run's base after a small merge.
    for i in range(0, files, max(1, files // 20)):
        target = path / f"pkg{i // 100:03}" / f"mod{i:05}.py"
        target.write_text(source(i) + "# changed\n")
    for args in (["add", "-A"], ["commit", "-q", "-m", "next"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    return path


def file_system(path: Path) -> str:
    """The type and mount options of the file system holding `path`, as findmnt says."""
    found = subprocess.run(
        ["findmnt", "-no", "FSTYPE,OPTIONS", "-T", str(path)], capture_output=True, text=True
    )
    return " ".join(found.stdout.split()) or "file system unknown"


def fig(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the repository and workspaces go")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    load_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="tekton-bench-ws-", dir=args.dir))
    fs = file_system(tmp)
    names = (
        "create",
        "hot",
        "single",
        "floor",
        "copy",
        "recycled",
        "reuse",
        "rebuild",
        "same",
        "recycle",
        "remove",
    )
    times: dict[str, list[float]] = {name: [] for name in names}
    kernel: dict[str, list[float]] = {name: [] for name in names}

    can_drop = os.access(DROP_CACHES, os.W_OK)

    def measure(name: str, fn: Callable[[], object], *, cold: bool = False) -> None:
        # Each operation starts with the previous one's writes on disk, so none pays for
        # another's writeback.
        os.sync()
        if cold and can_drop:
            Path(DROP_CACHES).write_text("3\n")
        before = os.times()
        start = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - start)
        after = os.times()
        # System CPU of this process and of the git/tar it waited for: the kernel's time
        # making the files, which is where a slow from-nothing checkout goes here.
        kernel[name].append(
            after.system - before.system + after.children_system - before.children_system
        )

    try:
        repo = make_repo(tmp / "repo", args.files)
        root = tmp / "data" / "workspaces"
        ws = Workspace(repo=repo, base="HEAD", run_name=RUN, root=root)
        # The run before, at the commit before: its finished worktree becomes the spare.
        previous = Workspace(repo=repo, base="HEAD~1", run_name="tekton/run-0-bench0000", root=root)
        single = tmp / "single"
        floor_dir = tmp / "floor"
        copy_dir = tmp / "copy"
        patch = (
            "diff --git a/pkg000/mod00000.py b/pkg000/mod00000.py\n"
            "--- a/pkg000/mod00000.py\n+++ b/pkg000/mod00000.py\n"
            "@@ -1,3 +1,3 @@\n"
            '-"""Module 0."""\n+"""Module 0, changed."""\n \n VALUE = 0\n'
        )
        ws.create()  # warm-up: objects in the page cache, the lock folder made
        # Round robin: each repeat measures every operation once, so a burst of load from
        # other work on the machine hits all of them alike.
        for _ in range(args.repeat):
            workspaces_prune(root, live=[], repos=[repo], spares=False)
            measure("create", ws.create, cold=True)
            copy_dir.mkdir()
            measure("copy", lambda: subprocess.run(
                f"tar -C {ws.path} --exclude=./.git -cf - . | tar -C {copy_dir} -xf -",
                shell=True, check=True,
            ), cold=True)  # fmt: skip
            shutil.rmtree(copy_dir)
            measure("single", lambda: git_run(
                repo, "-c", "checkout.workers=1", "worktree", "add", "-q", "--detach",
                str(single), "HEAD", check=True, timeout=600,
            ), cold=True)  # fmt: skip
            git_run(repo, "worktree", "remove", "--force", str(single))
            measure("floor", lambda: write_tree(floor_dir, args.files), cold=True)
            shutil.rmtree(floor_dir, ignore_errors=True)
            ws.remove()
            previous.create()
            previous.remove()
            measure("recycled", ws.create)
            measure("reuse", ws.create)
            measure("rebuild", lambda: ws.rebuild([patch]))
            measure("same", lambda: ws.rebuild([patch]))
            measure("recycle", ws.remove)
            ws.create()
            measure("remove", lambda: ws.remove(recycle=False))
            measure("hot", ws.create)  # the next round's prune deletes it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()[0]

    rows = [
        (
            "`Workspace.create()` from nothing (worktree add, parallel checkout)",
            "create",
            "<= 1 s",
        ),
        (
            "the same right after a workspace was deleted (caches warm; see below)",
            "hot",
            "",
        ),
        ("`git worktree add` with one checkout worker", "single", ""),
        (f"reference: Python writing the same {args.files:,} files one by one", "floor", ""),
        (
            f"reference: `tar -c | tar -x` of the fresh workspace's {args.files:,} files",
            "copy",
            "",
        ),
        (
            "`create()` from the spare (the previous run's worktree, 20 files differ)",
            "recycled",
            "<= 1 s",
        ),
        ("`create()` on a healthy worktree (reuse)", "reuse", ""),
        ("`rebuild([patch])` from the fresh workspace (clean + apply)", "rebuild", ""),
        ("`rebuild([patch])` already in that state", "same", ""),
        ("`remove()`: worktree kept as the spare", "recycle", ""),
        ("`remove(recycle=False)`: worktree deleted", "remove", ""),
    ]
    ratio = statistics.median(times["create"]) / statistics.median(times["floor"])
    copy_ratio = statistics.median(times["create"]) / statistics.median(times["copy"])
    for label, name, _ in rows:
        f = fig(times[name])
        print(
            f"{label}: median {f['median'] * 1000:.1f} ms (min {f['min'] * 1000:.1f}, max {f['max'] * 1000:.1f})"
        )
    print(
        f"create / floor = {ratio:.2f}x, create / tar copy = {copy_ratio:.2f}x; "
        f"load average {load_start:.2f} -> {load_end:.2f}"
    )

    table = "\n".join(
        f"| {label} | {fig(times[n])['median'] * 1000:.1f} | {fig(times[n])['min'] * 1000:.1f} "
        f"| {fig(times[n])['max'] * 1000:.1f} | {statistics.median(kernel[n]) * 1000:.0f} | {target} |"
        for label, n, target in rows
    )
    sys_create = statistics.median(kernel["create"])
    cold = (
        "with the kernel's page, dentry and inode caches dropped"
        if can_drop
        else "after a `sync` only (dropping the caches needs root)"
    )

    sys_floor = statistics.median(kernel["floor"])
    body = f"""
## Workspace creation (issue 8, section 8)

`uv run python -m bench.workspace --files {args.files} --repeat {args.repeat}` on {machine()};
a repository of {args.files:,} Python files (100 per folder, about 20 lines each), the
workspaces on the same disk as the repository ({fs}); {args.repeat} rounds after one
warm-up, each measuring every operation once in turn, after a `sync`; the rows that make
files from nothing start cold, {cold}; times in ms.

| operation | median | min | max | system CPU, median | target |
|---|---:|---:|---:|---:|---|
{table}

A run's first workspace of a repository is a full checkout: `git worktree add
--no-checkout` under the repository's registry lock, then a parallel `reset --hard` (what
`worktree add` runs inside) outside it: {ratio:.2f}x one Python process writing the same
files, {copy_ratio:.2f}x `tar` copying them ({sys_create * 1000:.0f} ms of system CPU
against {sys_floor * 1000:.0f} ms for the Python writer). Any other way of making the
workspace from nothing (`git clone --shared`, a copy of a clean checkout; ext4 has no
reflinks, and hard links would let a sandboxed command's in-place write change the other
tree) makes the same files.

Why "right after a deletion" is slow: this machine's root file system is ext4 without a
journal. There the kernel will not reuse an inode freed in the last minute (six while
its inode table block is dirty) as long as that block is cached, and it checks each such
inode before handing out a new one (`perf` showed 90% of the time in
`find_inode_bit` -> `recently_deleted()`), so new files right after many were deleted
cost the kernel quadratically: 10,000 empty files took 2 to 9 s after a deletion here,
0.3 s with the caches dropped. A journalled ext4, XFS or tmpfs does not do this. Tekton
avoids the case rather than paying it: every later run of a repository starts from the
spare a finished run left (`remove()` keeps one per repository; `git worktree move`,
then `git reset --hard <base>` and `git clean -fdx`, which write only the files that
differ and remove what commands left), so a workspace is deleted only by `prune` or when
the spare is replaced. The 1-minute load average was {load_start:.2f} at the start and
{load_end:.2f} at the end.
"""
    if not args.no_write:
        doc_section_write("workspace", body)
        print("wrote the workspace section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
