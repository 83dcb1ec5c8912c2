"""How a person gets a run's change and judges it: the branch (base and head), the
workspace, the test evidence, the patch and a git bundle to download, and the open run
branches of a repository with their test result and review verdict.

Reads only: the database through runs.selectors, the repository through the hardened git
of swarm (swarm.workspace, swarm.git). Nothing here pushes, fetches or writes a ref; a
bundle is written to a temporary file that is gone once the download is open.

The web host may not have the checkout (the workers do): then the branch facts come from
what the run recorded, the patch from the code stage's stored artifact, and the bundle,
which needs the repository's objects, is unavailable, saying so.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from runs.models import Run, TestRunRecord
from runs.selectors import (
    evidence_summary,
    run_test_records,
    runs_delivery_facts,
    runs_named,
    runs_with_branches,
)
from runs.stage_work import run_patch, run_workspace
from swarm.git import GitError, git_out
from swarm.redact import redact
from swarm.workspace import WorkspaceError

logger = logging.getLogger("tekton.runs.delivery")

GIT_TIMEOUT_S = 10.0
BRANCHES_MAX = 200  # open run branches listed per repository


class DeliveryUnavailable(Exception):
    """The run's change cannot be served here; the message says why (for a 404)."""


# --- one run ------------------------------------------------------------------------------


@dataclass
class RunDelivery:
    """Where a run's change is and how to take it.

    `workspace_state`: "present" (the run's worktree exists on this host), "removed" (the
    run has a base commit but no worktree here: finished, or not started), "none" (the
    repository had no commit: the run had nothing to work on), "unavailable" (the
    repository is not on this host). `branch_head` is the branch's commit in git (None
    when the branch is gone, or the repository is not here: `branch_in_git` None).
    """

    branch: str
    base_commit: str
    head_commit: str
    workspace_path: str
    workspace_state: str
    branch_in_git: bool | None
    branch_head: str | None
    has_change: bool  # a committed branch, or at least a stored patch
    can_bundle: bool
    commands: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "branch": self.branch or None,
            "base_commit": self.base_commit or None,
            "head_commit": self.head_commit or None,
            "workspace": {"path": self.workspace_path or None, "state": self.workspace_state},
            "branch_in_git": self.branch_in_git,
            "branch_head": self.branch_head,
            "has_change": self.has_change,
            "can_bundle": self.can_bundle,
            "commands": dict(self.commands),
        }


def _repo_here(run: Run) -> bool:
    return bool(run.repo_path) and Path(run.repo_path).is_dir()


def run_delivery(run: Run) -> RunDelivery:
    """The branch and workspace facts of `run` (a few git calls when the repository is on
    this host, none otherwise). Never raises for git's sake: an unreadable repository
    reads as unavailable."""
    branch = run.branch
    state, in_git, head = "none", None, None
    path = ""
    if run.base_commit:
        workspace = run_workspace(run)
        path = str(workspace.path)
        if not _repo_here(run):
            state = "unavailable"
        else:
            try:
                state = "present" if workspace.exists() else "removed"
                head = workspace.branch_head()
                in_git = head is not None
            except (WorkspaceError, GitError, OSError) as exc:
                logger.info("run %s: repository not readable: %s", run.pk, redact(str(exc)))
                state, in_git, head = "unavailable", None, None
    has_patch = bool(branch) or run_patch(run) is not None
    commands: dict[str, str] = {}
    if branch and run.base_commit:
        commands = {
            "diff": f"git diff {run.base_commit}..{branch}",
            "merge": f"git merge {branch}",
            "fetch_bundle": f"git fetch {bundle_filename(run)} {branch}:{branch}",
        }
    return RunDelivery(
        branch=branch,
        base_commit=run.base_commit,
        head_commit=run.head_commit,
        workspace_path=path,
        workspace_state=state,
        branch_in_git=in_git,
        branch_head=head,
        has_change=has_patch,
        can_bundle=bool(in_git),
        commands=commands,
    )


def patch_filename(run: Run) -> str:
    return f"{run.slug}.patch"


def bundle_filename(run: Run) -> str:
    return f"{run.slug}.bundle"


def run_patch_text(run: Run) -> tuple[str, str]:
    """(the run's change as a unified diff, where it came from): `git diff base..branch`
    from the repository when the branch is there ("branch"), else the code stage's stored
    patch ("artifact"). Raises DeliveryUnavailable when the run has neither."""
    if run.branch and run.base_commit and _repo_here(run):
        workspace = run_workspace(run)
        try:
            if workspace.branch_head() is not None:
                return workspace.diff_text(), "branch"
        except (WorkspaceError, GitError, OSError) as exc:
            logger.info("run %s: diff from git failed: %s", run.pk, redact(str(exc)))
    stored = run_patch(run)
    if stored is None:
        raise DeliveryUnavailable(f"run {run.pk} has no change (the code stage wrote none)")
    return stored, "artifact"


def run_bundle_open(run: Run) -> IO[bytes]:
    """A git bundle of the run's branch with the base commit as its prerequisite, opened
    for reading: `git fetch <file> <branch>:<branch>` in a clone that has the base. The
    file is unlinked once open, so nothing stays on disk after the download. Raises
    DeliveryUnavailable (no branch, or no repository on this host)."""
    if not run.branch or not run.base_commit:
        raise DeliveryUnavailable(f"run {run.pk} has no branch (nothing was committed)")
    if not _repo_here(run):
        raise DeliveryUnavailable(
            f"the repository {run.repo_path} is not on this host; download the patch instead"
        )
    workspace = run_workspace(run)
    tmp_root = Path(settings.TEKTON_DATA_DIR) / "tmp"
    try:
        tmp_root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="bundle-", dir=tmp_root))
    except OSError as exc:
        raise DeliveryUnavailable(f"no room for the bundle: {exc.strerror}") from None
    dest = folder / bundle_filename(run)
    try:
        workspace.bundle(dest)
        handle = open(dest, "rb")  # noqa: SIM115 - the response closes it
    except WorkspaceError as exc:
        raise DeliveryUnavailable(f"the bundle cannot be made: {redact(str(exc))}") from None
    finally:
        dest.unlink(missing_ok=True)
        folder.rmdir()
    return handle


# --- test evidence ------------------------------------------------------------------------

_CHANGES = ("newly_failing", "newly_passing", "still_failing", "removed", "added", "unchanged")
_BAD = ("failed", "error")


def _change(base: str | None, branch: str | None) -> str:
    if branch is None:
        return "removed"
    if base is None:
        return "added"
    if branch in _BAD and base not in _BAD:
        return "newly_failing"
    if branch == "passed" and base in _BAD:
        return "newly_passing"
    if branch in _BAD and base in _BAD:
        return "still_failing"
    return "unchanged"


def _record_summary(record: TestRunRecord) -> dict[str, Any]:
    data = record.data if isinstance(record.data, dict) else {}
    return {
        "kind": record.kind,
        "stage": record.stage,
        "commit": record.commit or None,
        "reused": record.reused,
        "command": data.get("command"),
        "exit_code": data.get("exit_code"),
        "timed_out": bool(data.get("timed_out")),
        "duration_s": data.get("duration_s"),
        "totals": dict(data.get("totals") or {}),
        "evidence": bool(data.get("evidence")),
        "reasons": [str(r) for r in data.get("reasons") or []],
        "created_at": record.created_at,
    }


def run_test_results(run: Run, *, change: str | None = None) -> dict[str, Any]:
    """Every test of the run's test_debug measurement with its outcome on the base and on
    the branch and what changed (`newly_failing`, `newly_passing`, `still_failing`,
    `removed`, `added`, `unchanged`), in test id order, complete; with `change`, only
    those. Also every measured run (base, branch, agents' run_tests) in order. The
    newest base and branch records of test_debug are the ones compared; with no branch
    record (no change to test) the branch is the base."""
    records = run_test_records(run.pk)
    measured = [r for r in records if r.stage == "test_debug"]
    base = next((r for r in reversed(measured) if r.kind == TestRunRecord.Kind.BASE), None)
    branch = next((r for r in reversed(measured) if r.kind == TestRunRecord.Kind.BRANCH), None)
    base_data = base.data if base is not None and isinstance(base.data, dict) else {}
    branch_data = branch.data if branch is not None and isinstance(branch.data, dict) else None
    if branch_data is None:
        branch_data = base_data
    base_outcomes = dict(base_data.get("outcomes") or {})
    branch_outcomes = dict(branch_data.get("outcomes") or {})
    messages = {**(base_data.get("messages") or {}), **(branch_data.get("messages") or {})}
    results = []
    for test in sorted(set(base_outcomes) | set(branch_outcomes)):
        before, after = base_outcomes.get(test), branch_outcomes.get(test)
        what = _change(before, after)
        if change and what != change:
            continue
        results.append(
            {
                "test": test,
                "base": before,
                "branch": after,
                "change": what,
                "message": redact(str(messages.get(test) or "")),
            }
        )
    return {
        "run": run.pk,
        "measured": base is not None,
        "base_commit": run.base_commit or None,
        "head_commit": run.head_commit or None,
        "count": len(results),
        "results": results,
        "runs": [_record_summary(r) for r in records],
    }


TEST_CHANGES = _CHANGES


# --- a repository's open run branches --------------------------------------------------------


@dataclass
class OpenBranch:
    """One `<namespace>/run-*` branch of a repository not merged into its HEAD, with the
    run it belongs to (None: no run of this database has that name, or not visible)."""

    name: str
    head: str
    run: Run | None = None
    ship: bool | None = None  # the test evidence's verdict (None: not measured)
    newly_failing: int = 0
    newly_passing: int = 0
    tests: int | None = None
    review: str = ""  # the review artifact's status: ok / revise / block, or ""


def repo_run_branches(user, repo_path: str) -> tuple[list[OpenBranch], str]:
    """(the open run branches of the repository at `repo_path` whose run `user` may see,
    plus, for staff, those no run of this database claims; an error message or "").
    Open: not merged into the checkout's HEAD. Git's answer is the list (a branch
    deleted by a person is gone from it); the runs add status, tests and review."""
    repo = Path(repo_path)
    if not repo.is_dir():
        # A web host without the checkout: the branches as the workers recorded them.
        recorded = runs_with_branches(user, repo_path, limit=BRANCHES_MAX)
        rows = _rows(
            [(r.branch, r.head_commit) for r in recorded], {r.branch: r for r in recorded}, user
        )
        note = (
            "the repository is not on this host: branches as the workers recorded them "
            "(one merged or deleted since may still be listed)"
        )
        return rows, note if rows else "the repository is not on this host"
    pattern = f"refs/heads/{settings.TEKTON_NAMESPACE}/run-*"
    fmt = "--format=%(refname:lstrip=2)%00%(objectname)"
    try:
        try:
            out = git_out(repo, "for-each-ref", fmt, "--no-merged=HEAD", pattern,
                          timeout=GIT_TIMEOUT_S)  # fmt: skip
        except GitError:
            # No HEAD yet (or a detached, unborn one): every run branch is open.
            out = git_out(repo, "for-each-ref", fmt, pattern, timeout=GIT_TIMEOUT_S)
    except GitError as exc:
        return [], redact(str(exc))
    pairs = [line.split("\x00", 1) for line in out.splitlines() if "\x00" in line]
    pairs = pairs[:BRANCHES_MAX]
    return _rows(pairs, runs_named(user, [name for name, _ in pairs]), user), ""


def _rows(pairs: list, runs: dict[str, Run], user) -> list[OpenBranch]:
    """Rows for (branch, head) pairs, with their runs' status, tests and review."""
    facts = runs_delivery_facts([r.pk for r in runs.values()])
    is_staff = user is None or getattr(user, "is_staff", False)
    rows: list[OpenBranch] = []
    for name, head in pairs:
        run = runs.get(name)
        if run is None and not is_staff:
            continue  # another user's run does not exist for them
        row = OpenBranch(name=name, head=head, run=run)
        if run is not None:
            fact = facts.get(run.pk, {})
            row.review = fact.get("review", "")
            summary = evidence_summary(fact.get("evidence"))
            if summary is not None:
                row.ship = summary["ship"]
                row.newly_failing = len(summary["newly_failing"])
                row.newly_passing = len(summary["newly_passing"])
                row.tests = summary["branch"]["totals"].get("tests")
        rows.append(row)
    rows.sort(key=lambda r: -(r.run.pk if r.run else 0))
    return rows
