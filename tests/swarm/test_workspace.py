"""swarm.workspace: per-run worktrees, applying a model's diff, the run's branch, and the
user's checkout left exactly as it was by every operation."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from swarm.workspace import (
    Workspace,
    WorkspaceError,
    checkout_changes,
    workspaces_disk_usage,
    workspaces_prune,
)
from tests.swarm.repos import DATA_V1, diff_from, git, make_dirty, python_repo, snapshot

RUN = "tekton/run-12-3f9a1c2b"
CALC_DIFF = "".join(
    line + "\n"
    for line in (
        "diff --git a/pkg/calc.py b/pkg/calc.py",
        "--- a/pkg/calc.py",
        "+++ b/pkg/calc.py",
        "@@ -4,3 +4,7 @@ def add(a, b):",
        " ",
        " def sub(a, b):",
        "     return a - b",
        "+",
        "+",
        "+def mul(a, b):",
        "+    return a * b",
    )
)
NEW_FILE_DIFF = """diff --git a/pkg/div.py b/pkg/div.py
new file mode 100644
--- /dev/null
+++ b/pkg/div.py
@@ -0,0 +1,2 @@
+def div(a, b):
+    return a / b
"""


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("outside the tree\n")
    return folder


@pytest.fixture
def repo(tmp_path: Path, outside: Path):
    """The user's checkout, dirty, checked after the test: nothing a run does may change
    its status, stash, HEAD, current branch, index or files."""
    path = python_repo(tmp_path / "user" / "calc", outside=outside)
    make_dirty(path)
    before = snapshot(path)
    yield path
    assert snapshot(path) == before


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "workspaces"


def workspace(repo: Path, root: Path, run: str = RUN, base: str = "HEAD") -> Workspace:
    return Workspace(repo=repo, base=git(repo, "rev-parse", base).strip(), run_name=run, root=root)


def status(path: Path) -> str:
    return git(path, "status", "--porcelain=v1", "--untracked-files=all", "--ignored")


def registered(repo: Path) -> list[str]:
    return [
        line.split(" ", 1)[1]
        for line in git(repo, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


# --- create, reuse, rebuild ---------------------------------------------------------------


def test_create_checks_out_the_base_outside_the_checkout_ignoring_its_changes(repo, root):
    ws = workspace(repo, root)
    path = ws.create()
    assert path.parent == root and not path.is_relative_to(repo)
    assert (path / "pkg/calc.py").read_text() == git(repo, "show", "HEAD:pkg/calc.py")
    assert not (path / "staged.txt").exists() and not (path / "scratch.txt").exists()
    assert status(path) == ""
    assert git(path, "rev-parse", "HEAD").strip() == ws.base
    assert str(path) in registered(repo)
    assert sorted(str(c) for c in checkout_changes(repo)) == [
        " M pkg/calc.py",
        "?? scratch.txt",
        "A  staged.txt",
    ]


def test_create_reuses_a_healthy_worktree(repo, root):
    ws = workspace(repo, root)
    ws.create()
    marker = ws.path / "pkg" / "calc.py"
    inode = marker.stat().st_ino
    assert workspace(repo, root).create() == ws.path
    assert marker.stat().st_ino == inode  # not checked out again


@pytest.mark.parametrize(
    "leftover", ["junk folder", "registration only", "other base", "dangling .git"]
)
def test_create_replaces_a_broken_or_foreign_leftover(repo, root, leftover):
    ws = workspace(repo, root)
    if leftover == "junk folder":
        (ws.path / "half").mkdir(parents=True)
        (ws.path / "half" / "file").write_text("from a killed worker\n")
    elif leftover == "registration only":
        ws.create()
        subprocess.run(["rm", "-rf", str(ws.path)], check=True)  # killed mid-stage, folder lost
    elif leftover == "other base":
        workspace(repo, root, base="HEAD~1").create()
    else:
        ws.path.mkdir(parents=True)
        (ws.path / ".git").write_text("gitdir: /nonexistent/.git/worktrees/x\n")
    assert ws.create() == ws.path
    assert ws.exists() and status(ws.path) == ""
    assert git(ws.path, "rev-parse", "HEAD").strip() == ws.base
    assert not (ws.path / "half").exists()
    assert registered(repo).count(str(ws.path)) == 1


def test_a_base_commit_that_is_gone_is_a_clear_error(repo, root):
    ws = Workspace(
        repo=repo, base="0123456789abcdef0123456789abcdef01234567", run_name=RUN, root=root
    )
    with pytest.raises(WorkspaceError, match=r"base commit 0123456789ab is not in the repository"):
        ws.create()
    assert not ws.path.exists() and registered(repo) == [str(repo)]


def test_rebuild_anywhere_from_base_and_stored_patches(repo, root, tmp_path):
    first = workspace(repo, root)
    first.create()
    assert first.apply(CALC_DIFF).ok and first.apply(NEW_FILE_DIFF).ok
    head = first.commit("add mul and div").head_sha
    # Another worker: its own data directory, same repository path.
    other = workspace(repo, tmp_path / "worker2" / "workspaces")
    other.rebuild([CALC_DIFF, NEW_FILE_DIFF])
    assert (
        git(other.path, "write-tree").strip() == git(repo, "rev-parse", f"{head}^{{tree}}").strip()
    )
    assert "def mul" in (other.path / "pkg/calc.py").read_text()
    assert (other.path / "pkg/div.py").exists()


def test_rebuild_drops_what_commands_left_and_keeps_the_patches(repo, root):
    ws = workspace(repo, root)
    ws.rebuild([CALC_DIFF])
    (ws.path / "pkg" / "__pycache__").mkdir()
    (ws.path / "pkg" / "__pycache__" / "calc.pyc").write_bytes(b"\0\1")
    (ws.path / "README.md").write_text("scribbled by a test run\n")
    (ws.path / "pkg" / "data.py").unlink()
    ws.rebuild([CALC_DIFF])
    assert not (ws.path / "pkg" / "__pycache__").exists()
    assert (ws.path / "README.md").read_text() == git(repo, "show", "HEAD:README.md")
    assert (ws.path / "pkg" / "data.py").exists()
    assert "def mul" in (ws.path / "pkg/calc.py").read_text()
    ws.rebuild([])
    assert status(ws.path) == "" and "def mul" not in (ws.path / "pkg/calc.py").read_text()


def _committed(repo: Path, root: Path) -> tuple[Workspace, str]:
    ws = workspace(repo, root)
    ws.rebuild([])
    assert ws.apply(CALC_DIFF).ok
    return ws, ws.commit("add mul").head_sha


def _scribble(ws: Workspace, what: str) -> None:
    env = {"GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x", "GIT_COMMITTER_NAME": "x",
           "GIT_COMMITTER_EMAIL": "x@x"}  # fmt: skip
    if what == "untracked":
        (ws.path / "notes.txt").write_text("left by a command\n")
    elif what == "ignored":
        (ws.path / "pkg" / "__pycache__").mkdir()
        (ws.path / "pkg" / "__pycache__" / "calc.pyc").write_bytes(b"\0")
    elif what == "modified":
        (ws.path / "README.md").write_text("scribbled\n")
    elif what == "deleted":
        (ws.path / "pkg" / "data.py").unlink()
    elif what == "staged":
        (ws.path / "README.md").write_text("scribbled\n")
        subprocess.run(["git", "add", "README.md"], cwd=ws.path, check=True)
    elif what == "committed":
        (ws.path / "README.md").write_text("scribbled\n")
        subprocess.run(
            ["git", "commit", "-qam", "by a command"], cwd=ws.path, check=True,
            env={**os.environ, **env},
        )  # fmt: skip


@pytest.mark.parametrize(
    "what", ["untracked", "ignored", "modified", "deleted", "staged", "committed"]
)
def test_rebuild_of_the_committed_change_undoes_whatever_a_command_did(repo, root, what):
    ws, head = _committed(repo, root)
    _scribble(ws, what)
    ws.rebuild([CALC_DIFF])
    # Exactly the change's tree (HEAD is the commit, or the base with the change staged
    # when the rebuild started over), nothing changed beside the index or left untracked.
    assert (
        git(ws.path, "write-tree").strip() == git(ws.path, "rev-parse", f"{head}^{{tree}}").strip()
    )
    assert all(line[1] == " " for line in status(ws.path).splitlines()), status(ws.path)
    assert (ws.path / "README.md").read_text() == git(repo, "show", "HEAD:README.md")
    assert "def mul" in (ws.path / "pkg/calc.py").read_text()


def test_an_untouched_workspace_is_checked_with_one_git_process(repo, root, monkeypatch):
    """Every stage rebuilds its workspace; when nothing changed it since the last stage,
    one `git status` is all it costs: the repository facts (one `rev-parse`) are this
    process's from the stage before, asked again once they are a minute old."""
    import swarm.workspace as workspace_module

    _committed(repo, root)
    calls: list[tuple[str, ...]] = []
    real = workspace_module.git_run

    def counting(path, *args, **kw):
        calls.append(tuple(a for a in args if not a.startswith("--git-dir=")))
        return real(path, *args, **kw)

    monkeypatch.setattr(workspace_module, "git_run", counting)
    workspace(repo, root).rebuild([CALC_DIFF])  # a new object, as a stage makes
    verbs = [next(a for a in c if not a.startswith("-")) for c in calls]
    assert verbs == ["status"], calls
    calls.clear()
    monkeypatch.setattr(workspace_module, "FACTS_TTL_S", 0.0)
    workspace(repo, root).rebuild([CALC_DIFF])
    verbs = [next(a for a in c if not a.startswith("-")) for c in calls]
    assert verbs == ["rev-parse", "status"], calls


def test_rebuild_with_a_patch_that_no_longer_applies_leaves_the_base(repo, root):
    ws = workspace(repo, root)
    bad = CALC_DIFF.replace("     return a - b", "     return b - a")
    with pytest.raises(
        WorkspaceError, match=r"stored patch 2 of 2 no longer applies to [0-9a-f]{12}: .*patch"
    ):
        ws.rebuild([NEW_FILE_DIFF, bad])
    assert status(ws.path) == "" and not (ws.path / "pkg/div.py").exists()


# --- apply --------------------------------------------------------------------------------


def test_apply_plain(repo, root):
    ws = workspace(repo, root)
    ws.create()
    result = ws.apply(CALC_DIFF.rstrip("\n"))  # a missing last newline is not "corrupt"
    assert (result.ok, result.method, result.error, result.files) == (
        True,
        "apply",
        "",
        ("pkg/calc.py",),
    )
    assert result.patch_sha256 == hashlib.sha256(CALC_DIFF.rstrip("\n").encode()).hexdigest()
    assert "def mul" in (ws.path / "pkg/calc.py").read_text()
    assert status(ws.path) == "M  pkg/calc.py\n"  # in the index: what commit will take


def test_apply_falls_back_to_a_three_way_merge(repo, root, tmp_path):
    # Written against the first commit; the base changed a line inside the hunk's context.
    diff = diff_from(
        repo, tmp_path / "scratch", "HEAD~1",
        {"pkg/data.py": DATA_V1.replace("value_4 = 4", "value_4 = 44")},
    )  # fmt: skip
    ws = workspace(repo, root)
    ws.create()
    result = ws.apply(diff)
    assert result.ok and result.method == "3way"
    assert result.attempts[0][0] == "apply" and "patch does not apply" in result.attempts[0][1]
    text = (ws.path / "pkg/data.py").read_text()
    assert "value_2 = 22" in text and "value_4 = 44" in text and "<<<<<<<" not in text


def test_a_conflict_leaves_a_clean_tree_and_reports_the_first_error(repo, root, tmp_path):
    diff = diff_from(
        repo, tmp_path / "scratch", "HEAD~1",
        {"pkg/data.py": DATA_V1.replace("value_2 = 2", "value_2 = 'two'")},
    )  # fmt: skip
    ws = workspace(repo, root)
    ws.rebuild([NEW_FILE_DIFF])
    before = status(ws.path)
    result = ws.apply(diff)
    assert not result.ok and result.method == ""
    assert [step for step, _ in result.attempts] == ["apply", "3way"]
    assert result.error == result.attempts[0][1]
    assert "patch failed: pkg/data.py" in result.error and "conflict" not in result.error.lower()
    assert status(ws.path) == before == "A  pkg/div.py\n"  # the earlier patch stays, no debris
    assert "<<<<<<<" not in (ws.path / "pkg/data.py").read_text()
    assert not list(ws.path.rglob("*.rej")) and not list(ws.path.rglob("*.orig"))


def _diff_for(path: str, old: str | None = "x\n", new: str | None = "y\n") -> str:
    lines = [f"diff --git a/{path} b/{path}"]
    if old is None:
        lines += [
            "new file mode 100644",
            "--- /dev/null",
            f"+++ b/{path}",
            "@@ -0,0 +1 @@",
            f"+{new.strip()}",
        ]
    else:
        lines += [
            f"--- a/{path}",
            f"+++ b/{path}",
            "@@ -1 +1 @@",
            f"-{old.strip()}",
            f"+{new.strip()}",
        ]
    return "\n".join(lines) + "\n"


REFUSED = {
    "parent": (_diff_for("../escape.txt", None), r"'../escape.txt' goes outside the repository \('..'\)"),
    "absolute": ("--- /etc/hostname\n+++ /etc/hostname\n@@ -1 +1 @@\n-a\n+b\n", r"'/etc/hostname' is an absolute path"),
    "git dir": (_diff_for(".git/hooks/pre-commit", None), r"'.git/hooks/pre-commit' points inside .git"),
    "nested git": (_diff_for("pkg/.GIT/config", None), r"points inside .git"),
    "symlink out": (_diff_for("outside/secret.txt", "outside the tree\n", "pwned\n"), r"goes through the symbolic link 'outside', which leads outside"),
    "binary": (
        "diff --git a/logo.png b/logo.png\nnew file mode 100644\nindex 0000000..e69de29\n"
        "GIT binary patch\nliteral 3\nKcmZ?wWMTjS0RR91\n\nliteral 0\nHcmV?d00001\n\n",
        r"binary diff for 'logo.png'",
    ),
    "new symlink": (
        "diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n",
        r"creates or changes a symbolic link",
    ),
    "not a diff": ("--- a/x\n+++ b/x\n@@ -1,5 +1,5 @@\n-a\n", r"not a valid unified diff"),
    "no files": ("I would change calc.py to add mul.\n", r"names no files"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_unsafe_diffs_are_refused_with_a_reason_before_git_sees_them(repo, root, outside, case):
    diff, reason = REFUSED[case]
    ws = workspace(repo, root)
    ws.create()
    result = ws.apply(diff)
    assert not result.ok and result.attempts == (("validate", result.error),)
    assert re.search(reason, result.error), result.error
    assert status(ws.path) == ""
    assert (outside / "secret.txt").read_text() == "outside the tree\n"
    assert not (root / "escape.txt").exists() and not (ws.path / ".git").is_dir()


# --- commit, retry, branch ----------------------------------------------------------------


def test_commit_puts_the_applied_change_on_the_run_branch(repo, root):
    ws = workspace(repo, root)
    ws.create()
    assert ws.apply(CALC_DIFF).ok
    (ws.path / "junit.xml").write_text("<testsuite/>\n")  # left by a test run: not the change
    result = ws.commit("Add mul\n\nRun 12, code stage.")
    assert (result.branch, result.base_sha, result.files) == (RUN, ws.base, ("pkg/calc.py",))
    assert git(repo, "rev-parse", f"refs/heads/{RUN}").strip() == result.head_sha
    assert git(repo, "rev-parse", f"{result.head_sha}^").strip() == ws.base
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s", RUN).strip() == (
        "Tekton <tekton@localhost>|Tekton <tekton@localhost>|Add mul"
    )
    assert git(repo, "ls-tree", "-r", "--name-only", RUN).split() == [
        "NOTES.txt", "README.md", "outside", "pkg/__init__.py", "pkg/calc.py", "pkg/data.py",
        "tests/test_calc.py",
    ]  # fmt: skip
    text = git(repo, "diff", f"{ws.base}..{RUN}")
    assert ws.diff_text() == text
    assert result.diff_sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_hooks_do_not_run_on_commit(repo, root, tmp_path):
    canary = tmp_path / "hook-ran"
    for hook in (
        "pre-commit",
        "commit-msg",
        "post-commit",
        "reference-transaction",
        "post-checkout",
    ):
        script = repo / ".git" / "hooks" / hook
        script.write_text(f"#!/bin/sh\necho {hook} >> {canary}\n")
        script.chmod(0o755)
    ws = workspace(repo, root)
    ws.create()
    ws.apply(CALC_DIFF)
    ws.commit("add mul")
    assert not canary.exists()


def test_a_retried_code_stage_replaces_the_branch_head(repo, root):
    ws = workspace(repo, root)
    ws.rebuild([])
    ws.apply(CALC_DIFF)
    first = ws.commit("attempt 1").head_sha
    ws.rebuild([])
    ws.apply(NEW_FILE_DIFF)
    second = ws.commit("attempt 2")
    assert second.head_sha != first
    assert git(repo, "rev-parse", RUN).strip() == second.head_sha
    assert git(repo, "rev-parse", f"{RUN}^").strip() == ws.base
    assert second.files == ("pkg/div.py",)
    assert ws.branch_delete() and ws.branch_head() is None


def test_git_locks_left_by_a_killed_worker_do_not_stop_the_next_attempt(repo, root):
    ws = workspace(repo, root)
    ws.rebuild([])
    ws.apply(CALC_DIFF)
    # What a worker killed inside `git apply --index` or `git update-ref` leaves behind.
    left = [ws.git_dir() / "index.lock", repo / ".git" / "refs" / "heads" / f"{RUN}.lock"]
    left[1].parent.mkdir(parents=True, exist_ok=True)
    for lock in left:
        lock.write_text("")
    ws.rebuild([CALC_DIFF])
    result = ws.commit("attempt 2")
    assert git(repo, "rev-parse", RUN).strip() == result.head_sha
    assert not any(lock.exists() for lock in left)


def test_an_empty_change_is_not_committed(repo, root):
    ws = workspace(repo, root)
    ws.create()
    (ws.path / "new.txt").write_text("made by a command, not by a diff\n")
    with pytest.raises(WorkspaceError, match="the change is empty"):
        ws.commit("nothing")
    assert ws.branch_head() is None


def test_a_branch_checked_out_elsewhere_is_not_moved(repo, root, tmp_path):
    ws = workspace(repo, root)
    ws.create()
    ws.apply(CALC_DIFF)
    head = ws.commit("one").head_sha
    git(repo, "worktree", "add", "-q", str(tmp_path / "user-wt"), RUN)
    ws.rebuild([NEW_FILE_DIFF])
    with pytest.raises(WorkspaceError, match=r"checked out in .*user-wt"):
        ws.commit("two")
    assert ws.branch_head() == head


def test_changed_lines_of_the_branch(repo, root):
    ws = workspace(repo, root)
    ws.create()
    edit = """diff --git a/pkg/calc.py b/pkg/calc.py
--- a/pkg/calc.py
+++ b/pkg/calc.py
@@ -1,2 +1,2 @@
-def add(a, b):
+def add(a: int, b: int) -> int:
     return a + b
diff --git a/pkg/data.py b/pkg/data.py
--- a/pkg/data.py
+++ b/pkg/data.py
@@ -1,3 +1,2 @@
 value_1 = 1
-value_2 = 22
 value_3 = 3
"""
    assert ws.apply(edit).ok and ws.apply(CALC_DIFF).ok and ws.apply(NEW_FILE_DIFF).ok
    ws.commit("typed add, mul, div")
    assert ws.changed_lines() == {"pkg/calc.py": {1, 7, 8, 9, 10}, "pkg/div.py": {1, 2}}


def test_changed_lines_need_a_branch(repo, root):
    ws = workspace(repo, root)
    ws.create()
    with pytest.raises(WorkspaceError, match="has no branch"):
        ws.changed_lines()


def test_bundle_carries_the_branch_for_a_clone_at_the_base(repo, root, tmp_path):
    ws = workspace(repo, root)
    ws.create()
    ws.apply(CALC_DIFF)
    head = ws.commit("add mul").head_sha
    bundle = ws.bundle(tmp_path / "artifacts" / "run-12.bundle")
    assert bundle.is_file() and not list(bundle.parent.glob(".*tmp"))
    clone = tmp_path / "elsewhere"
    git(tmp_path, "clone", "-q", "--no-local", str(repo), str(clone))
    git(clone, "bundle", "verify", str(bundle))
    git(clone, "fetch", "-q", str(bundle), f"{RUN}:{RUN}")
    assert git(clone, "rev-parse", RUN).strip() == head


# --- remove, prune, disk use --------------------------------------------------------------


def test_remove_keeps_the_branch(repo, root):
    ws = workspace(repo, root)
    ws.create()
    ws.apply(CALC_DIFF)
    head = ws.commit("add mul").head_sha
    ws.remove()
    assert not ws.path.exists() and str(ws.path) not in registered(repo)
    assert ws.branch_head() == head
    ws.remove()  # idempotent
    assert workspaces_disk_usage(root).spares == 1  # kept for the next run


def test_a_finished_runs_worktree_is_recycled_for_the_next_run(repo, root):
    first = workspace(repo, root, "tekton/run-1-aaaa", base="HEAD~1")
    first.create()
    first.apply(CALC_DIFF)
    head = first.commit("add mul").head_sha
    (first.path / "junk.txt").write_text("left by a command\n")
    (first.path / "README.md").write_text("scribbled\n")
    inode = (first.path / "tests" / "test_calc.py").stat().st_ino
    first.remove()
    assert not first.path.exists() and first.spare_path.is_dir()
    usage = workspaces_disk_usage(root)
    assert (usage.workspaces, usage.spares) == (0, 1)
    second = workspace(repo, root, "tekton/run-2-bbbb", base="HEAD")
    second.create()
    assert (second.path / "tests" / "test_calc.py").stat().st_ino == inode  # not checked out again
    assert status(second.path) == "" and not (second.path / "junk.txt").exists()
    assert git(second.path, "rev-parse", "HEAD").strip() == second.base
    for name in ("README.md", "pkg/calc.py", "pkg/data.py"):
        assert (second.path / name).read_text() == git(repo, "show", f"HEAD:{name}")
    assert not first.spare_path.exists() and first.branch_head() == head
    assert sorted(registered(repo)) == sorted([str(repo), str(second.path)])


def test_one_spare_per_repository(repo, root):
    runs = [workspace(repo, root, f"tekton/run-{i}-cccc") for i in (1, 2, 3)]
    runs[0].create()
    runs[1].create()
    runs[0].remove()
    runs[1].remove()  # the repository has a spare already: deleted
    assert workspaces_disk_usage(root).spares == 1
    assert sorted(registered(repo)) == sorted([str(repo), str(runs[0].spare_path)])
    runs[2].create()  # takes the spare
    runs[2].remove(recycle=False)
    assert workspaces_disk_usage(root).spares == 0 and registered(repo) == [str(repo)]


def test_runs_started_together_all_get_their_workspace(repo, root):
    """git keeps no lock on its worktree registry: a `worktree add` that read another
    add's half-written entry died ("failed to read .../commondir"), and the registry
    folder vanished under a listing with its last entry. 16 runs at a time (one a round
    through the spare) must all get a workspace and leave no registration behind."""
    import threading

    failures: list[str] = []

    def one(round_: int, i: int) -> None:
        ws = workspace(repo, root, f"tekton/run-{round_}-{i:08x}")
        try:
            ws.create()
            assert git(ws.path, "rev-parse", "HEAD").strip() == ws.base
            assert status(ws.path) == ""
            ws.remove(recycle=i == 0)  # one a round becomes the spare another takes
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            failures.append(f"{type(exc).__name__}: {exc}")

    for round_ in range(5):
        threads = [threading.Thread(target=one, args=(round_, i)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    spares = [str(p) for p in (root / ".tekton" / "spare").iterdir() if p.is_dir()]
    assert sorted(registered(repo)) == sorted([str(repo), *spares]) and len(spares) <= 1


def test_a_tampered_spare_is_not_reused(repo, root, tmp_path):
    first = workspace(repo, root, "tekton/run-1-dddd")
    first.create()
    first.remove()
    (first.spare_path / ".git").write_text(f"gitdir: {tmp_path / 'planted'}\n")
    second = workspace(repo, root, "tekton/run-2-dddd")
    second.create()
    assert second.exists() and status(second.path) == ""
    assert not first.spare_path.exists()
    assert sorted(registered(repo)) == sorted([str(repo), str(second.path)])


def test_prune_removes_orphans_and_stale_registrations_only(repo, root, tmp_path):
    live = workspace(repo, root, "tekton/run-1-aaaa")
    orphan = workspace(repo, root, "tekton/run-2-bbbb")
    gone = workspace(repo, root, "tekton/run-3-cccc")
    for ws in (live, orphan, gone):
        ws.create()
    subprocess.run(["rm", "-rf", str(gone.path)], check=True)  # a worker lost its disk
    (root / "not-a-workspace").mkdir()
    spare_of_gone_repo = tmp_path / "gone-repo"
    python_repo(spare_of_gone_repo)
    vanished = workspace(spare_of_gone_repo, root, "tekton/run-9-eeee")
    vanished.create()
    vanished.remove()
    subprocess.run(["rm", "-rf", str(spare_of_gone_repo)], check=True)
    kept = workspace(repo, root, "tekton/run-4-ffff")
    kept.create()
    kept.remove()
    users_own = tmp_path / "user-feature"
    git(repo, "worktree", "add", "-q", "--detach", str(users_own))
    subprocess.run(["rm", "-rf", str(users_own)], check=True)  # the user's, on a disk not mounted
    removed = workspaces_prune(root, live=["tekton/run-1-aaaa"], repos=[repo])
    assert orphan.path in removed and root / "not-a-workspace" in removed
    assert vanished.spare_path in removed and kept.spare_path.is_dir()  # spares are kept
    assert live.exists() and not orphan.path.exists()
    assert sorted(registered(repo)) == sorted(
        [str(repo), str(live.path), str(kept.spare_path), str(users_own)]
    )
    workspaces_prune(root, live=["tekton/run-1-aaaa"], repos=[repo], spares=False)
    assert not kept.spare_path.exists()
    assert sorted(registered(repo)) == sorted([str(repo), str(live.path), str(users_own)])
    assert sorted(p.name for p in (root / ".tekton").iterdir() if p.is_file()) == [
        "tekton--run-1-aaaa.json",
        "tekton--run-1-aaaa.lock",
    ]


def test_prune_dry_run_lists_what_it_would_remove_and_keeps_other_namespaces(repo, root):
    live = workspace(repo, root, "tekton/run-1-aaaa")
    orphan = workspace(repo, root, "tekton/run-2-bbbb")
    other_db = workspace(repo, root, "staging/run-2-cccc")
    for ws in (live, orphan, other_db):
        ws.create()
    before = sorted(registered(repo))
    planned = workspaces_prune(
        root, live=["tekton/run-1-aaaa"], repos=[repo], namespace="tekton", dry_run=True
    )
    assert planned == [orphan.path]
    assert orphan.exists() and sorted(registered(repo)) == before
    removed = workspaces_prune(root, live=["tekton/run-1-aaaa"], repos=[repo], namespace="tekton")
    assert removed == planned
    assert live.exists() and other_db.exists() and not orphan.path.exists()


def test_disk_usage_counts_workspaces_and_bytes(repo, root):
    assert workspaces_disk_usage(root).bytes == 0
    ws = workspace(repo, root)
    ws.create()
    usage = workspaces_disk_usage(root)
    assert usage.workspaces == 1 and usage.spares == 0 and usage.bytes >= 4096 * 5
    ws.remove(recycle=False)
    assert workspaces_disk_usage(root).workspaces == 0


# --- bad places and tampering -------------------------------------------------------------


def test_a_root_inside_the_repository_is_refused(repo):
    ws = Workspace(repo=repo, base="HEAD", run_name=RUN, root=repo / "var" / "ws")
    with pytest.raises(WorkspaceError, match="is inside the repository"):
        ws.create()
    assert not (repo / "var").exists()


def test_an_unusable_run_name_is_refused(repo, root):
    for name in ("../../etc", "tekton//run", "-rf", "tekton/run 1", "a--b"):
        with pytest.raises(WorkspaceError, match="is not usable as a branch"):
            Workspace(repo=repo, base="HEAD", run_name=name, root=root)


def test_a_root_that_cannot_be_made_is_a_clear_error(repo, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    ws = Workspace(repo=repo, base="HEAD", run_name=RUN, root=blocker / "workspaces")
    with pytest.raises(
        WorkspaceError, match=r"cannot write under .*file/workspaces: Not a directory"
    ):
        ws.create()
    assert registered(repo) == [str(repo)]


@pytest.fixture
def tmpfs(tmp_path: Path):
    """Mount small tmpfs folders (root only; skipped where mounting is not allowed)."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_full_disk_leaves_nothing_half_made(tmp_path, tmpfs):
    repo = python_repo(tmp_path / "big", outside=None)
    (repo / "big.txt").write_text("0123456789abcdef\n" * 40_000)  # 680 KB
    git(repo, "add", "big.txt")
    git(repo, "commit", "-q", "-m", "big file")
    ws = workspace(repo, tmpfs("size=256k") / "workspaces")
    with pytest.raises(WorkspaceError, match="no space left on the device of"):
        ws.create()
    assert not ws.path.exists() and registered(repo) == [str(repo)]


def test_a_read_only_root_is_a_clear_error(repo, tmpfs):
    ws = workspace(repo, tmpfs("ro,size=64k"))
    with pytest.raises(WorkspaceError, match="is on a read-only file system"):
        ws.create()
    assert registered(repo) == [str(repo)]


def test_a_rewritten_git_file_is_never_followed(repo, root, tmp_path):
    ws = workspace(repo, root)
    ws.create()
    # What a sandboxed command might do: point .git at a planted git directory whose
    # config runs a program on the host's next git call.
    planted = tmp_path / "planted"
    git(tmp_path, "init", "-q", str(planted))
    canary = tmp_path / "planted-ran"
    program = tmp_path / "evil.sh"
    program.write_text(f"#!/bin/sh\ntouch {canary}\ncat\n")
    program.chmod(0o755)
    git(planted, "config", "filter.evil.clean", str(program))
    git(planted, "config", "core.fsmonitor", str(program))
    (ws.path / ".gitattributes").write_text("* filter=evil\n")
    (ws.path / ".git").write_text(f"gitdir: {planted / '.git'}\n")
    assert not ws.exists()
    result_error = None
    try:
        ws.apply(CALC_DIFF)
    except WorkspaceError as exc:
        result_error = str(exc)
    assert result_error and "the workspace's .git file was changed" in result_error
    with pytest.raises(WorkspaceError, match=".git file was changed"):
        ws.commit("x")
    ws.create()  # rebuilt from scratch
    assert ws.exists() and ws.apply(CALC_DIFF).ok and ws.commit("add mul").head_sha
    assert not canary.exists()
    # The plant is live: plain git in the worktree would have run it.
    (ws.path / ".git").write_text(f"gitdir: {planted / '.git'}\n")
    subprocess.run(["git", "status"], cwd=ws.path, capture_output=True)
    assert canary.exists()


def test_a_git_file_naming_another_runs_entry_does_not_make_it_ours(repo, root):
    """The worktree's .git file is the short way to its registry entry; a command in the
    sandbox can rewrite it to name another run's entry, which must not be taken for this
    workspace's (and so never removed or reset with it)."""
    mine, other = (
        workspace(repo, root, "tekton/run-1-aaaa"),
        workspace(repo, root, "tekton/run-2-bbbb"),
    )
    mine.create()
    other.create()
    own, theirs = mine.git_dir(), other.git_dir()
    assert own and theirs and own != theirs
    (mine.path / ".git").write_text(f"gitdir: {theirs}\n")
    fresh = workspace(repo, root, "tekton/run-1-aaaa")  # as another process would see it
    assert fresh.git_dir() == own and not fresh.exists()
    fresh.remove(recycle=False)
    assert other.exists() and status(other.path) == "" and not mine.path.exists()
    assert sorted(registered(repo)) == sorted([str(repo), str(other.path)])
