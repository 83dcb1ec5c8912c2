"""Facts about the target git repository, and the `git apply --check` of a diff.

Everything goes through the `git` command line (no library), read-only: nothing here
changes the repository.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path, PurePosixPath

from swarm.context import RepoFacts
from swarm.git import GitError, git_run

FILES_CAP = 500
TEST_PATHS_CAP = 50
README_CHARS = 1500

_LANGUAGES = {
    ".py": "Python", ".pyi": "Python", ".js": "JavaScript", ".mjs": "JavaScript",
    ".cjs": "JavaScript", ".jsx": "JavaScript", ".ts": "TypeScript", ".tsx": "TypeScript",
    ".go": "Go", ".rs": "Rust", ".java": "Java", ".kt": "Kotlin", ".swift": "Swift",
    ".rb": "Ruby", ".php": "PHP", ".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++",
    ".hpp": "C++", ".cs": "C#", ".scala": "Scala", ".sh": "Shell", ".bash": "Shell",
    ".html": "HTML", ".css": "CSS", ".scss": "CSS", ".sql": "SQL", ".md": "Markdown",
    ".rst": "reStructuredText", ".yml": "YAML", ".yaml": "YAML", ".toml": "TOML",
    ".json": "JSON", ".ex": "Elixir", ".exs": "Elixir", ".lua": "Lua", ".r": "R",
    ".vue": "Vue", ".svelte": "Svelte", ".dart": "Dart", ".tf": "HCL",
}  # fmt: skip
_TEST_DIRS = {"test", "tests", "spec", "specs", "__tests__", "testing"}


class RepoError(Exception):
    """The path is not a usable git repository, or git failed on it."""


def _git(
    path: str | Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return git_run(path, *args, stdin=stdin)
    except GitError as exc:
        raise RepoError(str(exc)) from None


def _toplevel(path: Path) -> Path | None:
    if not path.is_dir():
        return None
    proc = _git(path, "rev-parse", "--show-toplevel")
    if proc.returncode != 0:
        return None
    return Path(proc.stdout.strip()).resolve()


def is_git_repo(path: str | Path) -> bool:
    """True when `path` is the top level of a git working tree (not a folder inside one)."""
    p = Path(path).resolve()
    return _toplevel(p) == p


def language_of(name: str) -> str | None:
    """The language of a file by its extension (`app/main.py` -> "Python"), None if unknown."""
    return _LANGUAGES.get(PurePosixPath(name).suffix.lower())


def _is_test_file(name: str) -> bool:
    base = PurePosixPath(name).name
    stem = base.split(".", 1)[0]
    return (
        stem.startswith("test_")
        or stem.endswith(("_test", "_spec"))
        or ".test." in base
        or ".spec." in base
        or base in ("conftest.py", "pytest.ini", "jest.config.js", "vitest.config.ts")
    )


def _test_paths(files: list[str]) -> tuple[str, ...]:
    """Test folders (the outermost folder named like tests/) and loose test files."""
    found: list[str] = []
    for name in files:
        parts = PurePosixPath(name).parts
        dirs = [i for i, part in enumerate(parts[:-1]) if part.lower() in _TEST_DIRS]
        entry = (
            "/".join(parts[: dirs[0] + 1]) + "/"
            if dirs
            else (name if _is_test_file(name) else None)
        )
        if entry and entry not in found:
            found.append(entry)
            if len(found) >= TEST_PATHS_CAP:
                break
    return tuple(found)


def _status_paths(raw: str) -> list[str]:
    # porcelain v1 -z: "XY path\0", and a rename/copy adds "orig\0" after it.
    paths: list[str] = []
    entries = raw.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC":
            i += 1
    return paths


def _readme(root: Path) -> str:
    for candidate in sorted(root.iterdir(), key=lambda p: p.name.lower()):
        if candidate.is_file() and candidate.name.lower().startswith("readme"):
            with candidate.open(encoding="utf-8", errors="replace") as fh:
                return fh.read(README_CHARS)
    return ""


def repo_facts(path: str | Path) -> RepoFacts:
    """Branch, HEAD, dirty state, tracked files (capped at 500, count exact), languages,
    test layout and the README's opening of the repository at `path`.

    Works on a repository with no commits (head None). Raises RepoError when `path` is
    missing, not a git repository, or a folder inside one.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise RepoError(f"repository path {str(p)!r} does not exist")
    if not p.is_dir():
        raise RepoError(f"repository path {str(p)!r} is not a directory")
    p = p.resolve()
    top = _toplevel(p)
    if top is None:
        raise RepoError(f"{str(p)!r} is not a git repository (run `git init` there first)")
    if top != p:
        raise RepoError(f"{str(p)!r} is inside the git repository {str(top)!r}; use its top level")

    branch_proc = _git(p, "symbolic-ref", "--short", "-q", "HEAD")
    branch = branch_proc.stdout.strip() or None  # None: detached HEAD
    head_proc = _git(p, "rev-parse", "-q", "--verify", "HEAD")
    head = head_proc.stdout.strip() if head_proc.returncode == 0 else None

    status = _git(p, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    if status.returncode != 0:
        raise RepoError(f"git status failed in {str(p)!r}: {status.stderr.strip()[:300]}")
    changed = _status_paths(status.stdout)

    ls = _git(p, "ls-files", "-z")
    if ls.returncode != 0:
        raise RepoError(f"git ls-files failed in {str(p)!r}: {ls.stderr.strip()[:300]}")
    files = [f for f in ls.stdout.split("\0") if f]

    languages = Counter(lang for f in files if (lang := language_of(f)))
    return RepoFacts(
        path=str(p),
        branch=branch,
        head=head,
        is_dirty=bool(changed),
        changed_files=tuple(changed[:FILES_CAP]),
        files=tuple(files[:FILES_CAP]),
        file_count=len(files),
        languages=dict(languages.most_common()),
        test_paths=_test_paths(files),
        readme_excerpt=_readme(p),
    )


def repo_head(path: str | Path) -> str | None:
    """The commit HEAD points at, or None for a repository with no commit yet."""
    proc = _git(path, "rev-parse", "-q", "--verify", "HEAD^{commit}")
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def patch_check(repo_path: str | Path, diff: str) -> tuple[bool, str]:
    """Would `diff` apply to the working tree at `repo_path`? Runs `git apply --check`
    with the diff on stdin; changes nothing. Returns (ok, one-line detail)."""
    if not diff.strip():
        return False, "empty diff: nothing to apply"
    if not is_git_repo(repo_path):
        return False, f"{str(repo_path)!r} is not a git repository"
    if not diff.endswith("\n"):
        diff += "\n"  # git apply reads a last line without newline as a corrupt patch
    try:
        proc = _git(repo_path, "apply", "--check", "-", stdin=diff)
    except RepoError as exc:
        return False, str(exc)
    if proc.returncode == 0:
        return True, "git apply --check: the diff applies cleanly"
    detail = " ".join(proc.stderr.split())[:500] or f"git apply exited {proc.returncode}"
    return False, f"git apply --check failed: {detail}"
