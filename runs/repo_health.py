"""Git facts about the repositories runs target, for the /repo/ page, and the reviews
waiting on a person.

Reads only. Every git call has a timeout, runs with a clean environment for git's own
variables (so a hook's GIT_DIR never points it elsewhere) and never asks for credentials;
a repository that cannot be read comes back with `error` set instead of raising.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db.models import Q, QuerySet

from runs.models import Artifact, Run, StageRun
from swarm.git import GitError, GitMissing, GitTimeout, git_out

GIT_TIMEOUT_S = 5.0
RECENT_COMMITS = 8
MAX_CHANGED_FILES = 200


@dataclass
class ChangedFile:
    status: str  # porcelain XY, e.g. " M", "??", "A "
    path: str


@dataclass
class Commit:
    sha: str
    subject: str
    author: str
    date: str


@dataclass
class DiffStat:
    path: str
    added: int | None  # None for binary files
    removed: int | None


@dataclass
class RepoHealth:
    path: str
    branch: str = ""
    upstream: str = ""
    ahead: int = 0
    behind: int = 0
    changed: list[ChangedFile] = field(default_factory=list)
    changed_truncated: bool = False
    commits: list[Commit] = field(default_factory=list)
    diffstat: list[DiffStat] = field(default_factory=list)
    error: str = ""

    @property
    def is_clean(self) -> bool:
        return not self.changed and not self.error

    @property
    def lines_added(self) -> int:
        return sum(d.added or 0 for d in self.diffstat)

    @property
    def lines_removed(self) -> int:
        return sum(d.removed or 0 for d in self.diffstat)


def _git(path: Path, *args: str) -> str:
    try:
        return git_out(path, *args, timeout=GIT_TIMEOUT_S)
    except GitMissing:
        raise GitError("git is not installed") from None
    except GitTimeout:
        raise GitError(f"git {args[0]} took longer than {GIT_TIMEOUT_S:g} s") from None


def _parse_branch_line(line: str, health: RepoHealth) -> None:
    # "## main...origin/main [ahead 1, behind 2]", "## HEAD (no branch)", "## No commits yet on main"
    body = line[3:]
    tracking = ""
    if " [" in body and body.endswith("]"):
        body, tracking = body[:-1].split(" [", 1)
    if body.startswith("No commits yet on "):
        health.branch = body[len("No commits yet on ") :]
        return
    if "..." in body:
        health.branch, health.upstream = body.split("...", 1)
    else:
        health.branch = body
    for part in tracking.split(","):
        word, _, count = part.strip().partition(" ")
        if word == "ahead" and count.isdigit():
            health.ahead = int(count)
        elif word == "behind" and count.isdigit():
            health.behind = int(count)


def repo_health(path: str | Path) -> RepoHealth:
    """Branch, upstream and ahead/behind, changed files, recent commits and the working
    tree's diff against HEAD (numstat) of one repository. Never raises."""
    repo = Path(path)
    health = RepoHealth(path=str(path))
    if not repo.is_dir():
        health.error = "the directory does not exist any more"
        return health
    try:
        status = _git(repo, "status", "--porcelain=v1", "--branch", "--untracked-files=normal")
        for line in status.splitlines():
            if line.startswith("## "):
                _parse_branch_line(line, health)
            elif len(line) > 3:
                if len(health.changed) >= MAX_CHANGED_FILES:
                    health.changed_truncated = True
                    continue
                health.changed.append(ChangedFile(status=line[:2], path=line[3:]))
        has_head = True
        try:
            log = _git(
                repo, "log", f"-n{RECENT_COMMITS}", "--format=%h%x1f%s%x1f%an%x1f%cI", "HEAD"
            )
        except GitError:
            has_head = False  # an empty repository has no HEAD yet
            log = ""
        for line in log.splitlines():
            parts = line.split("\x1f")
            if len(parts) == 4:
                health.commits.append(Commit(*parts))
        if has_head:
            for line in _git(repo, "diff", "--numstat", "HEAD").splitlines():
                parts = line.split("\t", 2)
                if len(parts) == 3:
                    added, removed, name = parts
                    health.diffstat.append(
                        DiffStat(
                            path=name,
                            added=int(added) if added.isdigit() else None,
                            removed=int(removed) if removed.isdigit() else None,
                        )
                    )
    except GitError as exc:
        health.error = str(exc)
    return health


def _under_roots(path: str) -> bool:
    resolved = Path(path).expanduser().resolve()
    roots = [Path(r).expanduser().resolve() for r in settings.TEKTON_REPO_ROOTS]
    return any(resolved == root or resolved.is_relative_to(root) for root in roots)


def repos_targeted(runs: QuerySet[Run]) -> list[str]:
    """Distinct repository paths of `runs` (already limited to what the user may see) that
    lie under TEKTON_REPO_ROOTS, most recently used first. One query."""
    seen: dict[str, None] = {}
    for path in runs.order_by("-created_at").values_list("repo_path", flat=True).distinct()[:200]:
        if path not in seen and _under_roots(path):
            seen[path] = None
    return list(seen)


# A root may be a home directory: look two levels down at most, a bounded number of entries.
_SCAN_DEPTH = 2
_SCAN_MAX_ENTRIES = 500


def repos_under_roots(*, limit: int = 50) -> list[str]:
    """Git repositories at or below TEKTON_REPO_ROOTS (two levels down at most; hidden
    folders skipped), sorted by path, at most `limit`."""
    found: list[str] = []

    def visit(folder: Path, depth: int) -> None:
        if (folder / ".git").exists():
            found.append(str(folder))
            return  # a repository's own folders hold no other repository worth offering
        if depth >= _SCAN_DEPTH:
            return
        try:
            with os.scandir(folder) as entries:
                children = [
                    Path(e.path)
                    for _, e in zip(range(_SCAN_MAX_ENTRIES), entries, strict=False)
                    if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
                ]
        except OSError:
            return  # unreadable: nothing to offer from there
        for child in sorted(children):
            visit(child, depth + 1)

    for root in settings.TEKTON_REPO_ROOTS:
        visit(Path(root).expanduser().resolve(), 0)
    return sorted(dict.fromkeys(found))[:limit]


def repos_suggested(runs: QuerySet[Run]) -> list[dict[str, str]]:
    """What the launcher offers: the repositories `runs` targeted, most recent first (the
    first is the default), then the allowed roots' other repositories."""
    recent = repos_targeted(runs)
    rest = [p for p in repos_under_roots() if p not in recent]
    return [{"path": p, "label": "used recently"} for p in recent] + [
        {"path": p, "label": "under an allowed root"} for p in rest
    ]


@dataclass
class Review:
    run_id: int
    repo_path: str
    goal: str
    stage: str
    kind: str  # "blocked" (waits for a person) or the review status ("revise", "block")
    reason: str


def reviews_outstanding(runs: QuerySet[Run]) -> list[Review]:
    """Blocked stages of blocked runs, and review artifacts whose status is revise or
    block, among `runs`. Two queries."""
    out: list[Review] = []
    blocked = (
        StageRun.objects.filter(run__in=runs, status=StageRun.Status.BLOCKED)
        .filter(run__status=Run.Status.BLOCKED)
        .select_related("run")
        .order_by("-run__created_at", "position")[:100]
    )
    for stage in blocked:
        out.append(
            Review(
                run_id=stage.run_id,
                repo_path=stage.run.repo_path,
                goal=stage.run.goal,
                stage=stage.stage,
                kind="blocked",
                reason=stage.reason,
            )
        )
    asked = (
        Artifact.objects.filter(run__in=runs, stage="review", kind=Artifact.Kind.JSON)
        .filter(Q(content__status="revise") | Q(content__status="block"))
        .select_related("run")
        .order_by("-run__created_at")[:100]
    )
    for artifact in asked:
        content = artifact.content if isinstance(artifact.content, dict) else {}
        issues = content.get("issues") if isinstance(content.get("issues"), list) else []
        out.append(
            Review(
                run_id=artifact.run_id,
                repo_path=artifact.run.repo_path,
                goal=artifact.run.goal,
                stage="review",
                kind=str(content.get("status")),
                reason="; ".join(str(i) for i in issues[:3]),
            )
        )
    return out


@dataclass
class RecordedRun:
    """What a run recorded about a repository, readable on any host: its branch name
    (`<namespace>/run-<id>-<uid8>`), the base commit it froze, its status and, once
    test_debug ran, whether its test evidence says ship."""

    run_id: int
    branch: str
    base_commit: str
    status: str
    goal: str
    created_at: object
    ship: bool | None = None
    test_summary: str = ""


def runs_recorded(
    runs: QuerySet[Run], paths: list[str], *, per_repo: int = 5
) -> dict[str, list[RecordedRun]]:
    """The newest runs of each repository in `paths` among `runs`, with their test
    reports: what the workers recorded, so the page needs no checkout on this host. Two
    queries."""
    out: dict[str, list[RecordedRun]] = {p: [] for p in paths}
    picked: list[Run] = []
    for run in runs.filter(repo_path__in=paths).order_by("-created_at", "-id")[
        : per_repo * max(1, len(paths)) * 4
    ]:
        if len(out[run.repo_path]) < per_repo:
            out[run.repo_path].append(
                RecordedRun(
                    run_id=run.pk,
                    branch=run.name,
                    base_commit=run.base_commit[:12],
                    status=run.status,
                    goal=run.goal,
                    created_at=run.created_at,
                )
            )
            picked.append(run)
    reports = {
        a.run_id: a.content
        for a in Artifact.objects.filter(
            run__in=[r.pk for r in picked], stage="test_debug", kind=Artifact.Kind.JSON
        ).only("run_id", "content")
    }
    for rows in out.values():
        for row in rows:
            report = reports.get(row.run_id)
            if isinstance(report, dict):
                row.ship = bool(report.get("ship"))
                row.test_summary = str(report.get("summary") or "")[:300]
    return out
